"""`babyhub`: one entry point, one subcommand per capability — the face of the library, nothing more.

Each module here adds its commands with `register(subparsers)` and names its handlers `handle_<command>`. A
handler parses (turning flags into the library's objects, inside `errors.from_flag` where a value came from one
flag), calls the library, and prints. Shared options are declared once in `_options.py`. Handlers import heavy
libraries when they run, so `babyhub --help` stays fast and the local-hub environment is configured before
huggingface_hub is imported.

A new command: a `register` function in the module of its capability (or a new module, added to `COMMANDS`),
its logic in the library.
"""

from __future__ import annotations

import sys

from hub_tools import __version__
from hub_tools.cli import data, demo, hub, space, teacher, train
from hub_tools.cli import eval as eval_
from hub_tools.cli._options import ArgumentParser, UsageError
from hub_tools.errors import BabyhubError
from hub_tools.hubenv import configure_for_endpoint

# In the order of `babyhub --help`.
COMMANDS = (data, hub, teacher, train, eval_, space, demo)


def build_parser() -> ArgumentParser:
    """The `babyhub` parser with every command's subparser (all of babyhub's parser class)."""
    parser = ArgumentParser(
        prog="babyhub",
        description="DPO for baby language models trained on CHILDES, published on the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=f"babyhub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one babyhub command; returns the exit code (2 with a one-line message for anything the user can fix)."""
    # Local-hub client settings must be in the environment before any HF library is imported.
    configure_for_endpoint()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        name = f"babyhub {err.command}" if err.command else "babyhub"
        print(f"{name}: error: {err}\n{err.usage.rstrip()}", file=sys.stderr)
        return err.exit_code
    try:
        code = args.func(args)
    except BabyhubError as err:
        print(f"babyhub {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"babyhub {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
