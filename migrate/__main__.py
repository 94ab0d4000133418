import sys

from migrate.main import main

sys.exit(main())
