"""Bounds on `run`'s options, read by the CLI and by the re-run shortcut (migrate/rerun.py)
alike, so that the shortcut never answers a command the CLI would refuse. Imports nothing:
the shortcut's start-up is the no-op re-run's whole cost."""

# The most objects `run` copies at once. Each holds a part buffer (16 MiB by default:
# 4 GiB at this bound) and up to three threads (copy, send, read ahead: 768 here), and
# the stores' connection pools are far smaller (32 for S3): beyond it a copy gains no
# speed, only memory, threads and throttling (a mistyped 99999999 built that many
# threads and died of MemoryError).
MAX_CONCURRENCY = 256
