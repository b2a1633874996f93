"""`babyhub`: one entry point, one subcommand per capability.

Each capability keeps its commands in its own module with a `register(subparsers)` function that adds
its parsers and sets `func` (a handler taking the parsed args and returning an exit code). Modules
import heavy libraries inside their handlers, so `babyhub --help` stays fast and the local-hub
environment is configured before huggingface_hub is imported.
"""

import argparse
import importlib
import sys

from hub_tools import __version__
from hub_tools.errors import BabyhubError
from hub_tools.hubenv import configure_for_endpoint

COMMAND_MODULES = [
    "hub_tools.data_commands",  # data build, data synthesize, push
    "hub_tools.local_hub.commands",  # hub serve, hub sync
    "hub_tools.train_commands",  # baby bootstrap, train, plots
    "hub_tools.eval_commands",  # eval minpairs, eval blimp
    "hub_tools.space_commands",  # space push, space run
    "hub_tools.demo",  # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babyhub",
        description="DPO for baby language models trained on CHILDES, published on the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=f"babyhub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Local-hub client settings must be in the environment before any HF library is imported.
    configure_for_endpoint()
    args = build_parser().parse_args(argv)
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
