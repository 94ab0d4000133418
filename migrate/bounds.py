"""Bounds on `run`'s options, read by the CLI and by the re-run shortcut (migrate/rerun.py)
alike, so that the shortcut never answers a command the CLI would refuse. Imports nothing:
the shortcut's start-up is the no-op re-run's whole cost."""

# The most objects `run` copies at once. Each holds a part buffer (16 MiB by default:
# 4 GiB at this bound) and up to three threads (copy, send, read ahead: 768 here), and
# the stores' connection pools are far smaller (32 for S3): beyond it a copy gains no
# speed, only memory, threads and throttling (a mistyped 99999999 built that many
# threads and died of MemoryError).
MAX_CONCURRENCY = 256
# The largest part `run` is asked to prefer: S3's largest part (5 GiB). Every part in flight
# is a buffer of this size: 100000 MiB would be refused by every store after a 100 GB
# allocation.
MAX_PART_SIZE_MIB = 5 * 1024
