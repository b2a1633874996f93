"""`babyhub space push|run`: publish a Space (the baby chat, the metric) and run one locally.

    babyhub space push spaces/baby_chat --repo-id me/baby-chat \\
        --models bbunzeck/another-llama,me/baby-dpo-real,me/baby-dpo-synthetic@checkpoint-4000
    babyhub space run --models out/baby,me/baby-dpo --port 7861

A Space folder is pushed as a bundle (the scorer placed beside `app.py`). For the chat Space, `--models` /
`--examples-dataset` are written into the pushed `models.yaml` and into the card's `models:` / `datasets:` front
matter, so the same folder serves the local demo and huggingface.co.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hub_tools.cli import _options
from hub_tools.spaces import CHAT_SPACE


def register(subparsers) -> None:
    """Add `babyhub space push` and `babyhub space run`."""
    commands = _options.add_command_group(
        subparsers, "space", help="Publish or run the baby chat Space", metavar="SUBCOMMAND"
    )

    push = _options.add_command(commands, "push", handle_space_push)
    push.add_argument("space_dir", type=Path, help="the Space folder, e.g. spaces/baby_chat")
    _options.add_repo_id(push, help="the Space repo, NAMESPACE/NAME")
    _add_chat_options(push)
    _options.add_private(push, what="the Space")
    push.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")

    run = _options.add_command(commands, "run", handle_space_run)
    run.add_argument("space_dir", type=Path, nargs="?", default=CHAT_SPACE, help="default: spaces/baby_chat")
    _add_chat_options(run)
    run.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")


def _add_chat_options(parser) -> None:
    parser.add_argument(
        "--models",
        help="comma-separated repo_id_or_path[@revision], the first is the baseline (default: models.yaml)",
    )
    parser.add_argument("--examples-dataset", help="dataset (repo id or folder) of the eval split for the examples")


def handle_space_push(args: argparse.Namespace) -> int:
    """Create/update a Gradio Space on the Hub from a Space folder."""
    from hub_tools.spaces import push_space

    result = push_space(
        args.space_dir,
        args.repo_id,
        models=args.models,
        examples_dataset=args.examples_dataset,
        private=args.private,
        endpoint=args.endpoint,
    )
    print(_options.pushed(result, args.space_dir))
    return 0


def handle_space_run(args: argparse.Namespace) -> int:
    """Serve a Space folder locally (python app.py)."""
    from hub_tools.spaces import exec_space, prepare_space_run

    run = prepare_space_run(
        args.space_dir, models=args.models, examples_dataset=args.examples_dataset, host=args.host, port=args.port
    )
    print(f"serving {run.folder} on {run.url} (Ctrl-C stops)", flush=True)
    exec_space(run)
