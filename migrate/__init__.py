"""migrate: move object-storage estates to sovereign European clouds, with proof."""


def tool_version() -> str:
    """migrate's installed version, as the report and each run's record state it."""
    # importlib.metadata costs ~50 ms to import: only when asked.
    from importlib.metadata import version

    return version("migrate")
