"""migrate: move object-storage estates to sovereign European clouds, with proof."""


def tool_version() -> str:
    """migrate's installed version, as the report and each run's record state it."""
    # importlib.metadata costs ~50 ms to import: only when asked.
    from importlib.metadata import version

    return version("migrate")


def os_user() -> str:
    """Who runs this process, as records and the report name them: the login name, or
    `uid N` where the system has none for it (a container run with an arbitrary uid)."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
