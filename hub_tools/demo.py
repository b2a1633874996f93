"""Commands of this capability (being written)."""


def register(subparsers) -> None:
    """Add this module's subcommands to `babyhub`."""
