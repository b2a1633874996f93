"""`babyhub space push|run`: publish the baby chat Space and run it locally.

    babyhub space push spaces/baby_chat --repo-id me/baby-chat \\
        --models bbunzeck/another-llama,me/baby-dpo-real,me/baby-dpo-synthetic@checkpoint-4000
    babyhub space run --models out/baby,me/baby-dpo --port 7861

A Space folder is pushed as a bundle (hub_tools/space_bundle.py places the scorer beside `app.py`). For the
chat Space, `--models` / `--examples-dataset` are written into the pushed `models.yaml` and into the card's
`models:` / `datasets:` front matter, so the same folder serves the local demo and huggingface.co.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.paths import SPACES

CHAT_SPACE = SPACES / "baby_chat"


def register(subparsers) -> None:
    """Add `babyhub space push` and `babyhub space run`."""
    space = subparsers.add_parser("space", help="publish or run the baby chat Space")
    commands = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    push = commands.add_parser("push", help="create/update a Gradio Space on the Hub from a Space folder")
    push.add_argument("space_dir", type=Path, help="the Space folder, e.g. spaces/baby_chat")
    push.add_argument("--repo-id", required=True, help="the Space repo, NAMESPACE/NAME")
    _add_model_options(push)
    push.add_argument("--private", action="store_true", help="create the Space private")
    push.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    push.set_defaults(func=run_push)

    run = commands.add_parser("run", help="serve a Space folder locally (python app.py)")
    run.add_argument("space_dir", type=Path, nargs="?", default=CHAT_SPACE, help="default: spaces/baby_chat")
    _add_model_options(run)
    run.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    run.set_defaults(func=run_run)


def _add_model_options(parser) -> None:
    parser.add_argument(
        "--models",
        help="comma-separated repo_id_or_path[@revision], the first is the baseline (default: models.yaml)",
    )
    parser.add_argument("--examples-dataset", help="dataset (repo id or folder) of the eval split for the examples")


# ------------------------------------------------------------------------------------------------- helpers
def check_space_dir(space_dir: Path) -> Path:
    """The folder, if it looks like a Gradio Space (app.py + README.md with front matter)."""
    space_dir = Path(space_dir)
    if not space_dir.is_dir():
        raise BabyhubError(f"{space_dir} is not a folder: give a Space folder such as spaces/baby_chat")
    for name in ("app.py", "README.md"):
        if not (space_dir / name).is_file():
            raise BabyhubError(f"{space_dir} has no {name}: a Gradio Space needs app.py and a README.md card")
    if not (space_dir / "README.md").read_text(encoding="utf-8").startswith("---"):
        raise BabyhubError(f"{space_dir / 'README.md'} has no front matter (`---` block with sdk: gradio): add it")
    return space_dir


def load_chat_module(space_dir: Path):
    """The chat Space's helper module (babychat.py) of `space_dir`, or None for another kind of Space."""
    path = space_dir / "babychat.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"babychat_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the module runs
    spec.loader.exec_module(module)
    return module


def read_chat_config(space_dir: Path, models: str | None, examples: str | None):
    """The chat Space's configuration with the command-line overrides, or None for another kind of Space."""
    chat = load_chat_module(space_dir)
    if chat is None:
        if models or examples:
            raise BabyhubError(
                f"{space_dir} is not the chat Space (no babychat.py): --models/--examples-dataset "
                "apply to spaces/baby_chat only"
            )
        return None, None
    env = {chat.MODELS_ENV: models or "", chat.EXAMPLES_ENV: examples or ""}
    try:
        return chat, chat.read_space_config(env=env, path=space_dir / "models.yaml")
    except chat.SpaceConfigError as err:
        raise BabyhubError(str(err)) from err


def stage_chat_space(space_dir: Path, config, out_dir: Path) -> Path:
    """A copy of the Space folder whose models.yaml and card front matter name `config`'s models and dataset."""
    import yaml
    from huggingface_hub import SpaceCard

    local = [m.source for m in config.models if m.is_local]
    if local:
        raise BabyhubError(
            f"a Space cannot read the local folder(s) {local}: push them to the Hub first "
            "(babyhub push FOLDER --repo-type model --repo-id NS/NAME) and give their repo ids in --models"
        )
    if config.examples_dataset and Path(config.examples_dataset).expanduser().is_dir():
        raise BabyhubError(
            f"a Space cannot read the local examples folder {config.examples_dataset}: push the eval split "
            "(babyhub push FOLDER --repo-id NS/NAME) and give its dataset repo id in --examples-dataset"
        )
    staged = out_dir / space_dir.name
    shutil.copytree(space_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    models = [
        {"repo_id": m.source, **({"revision": m.revision} if m.revision else {}), "label": m.label, "beta": m.beta}
        for m in config.models
    ]
    data = {"models": models}
    if config.examples_dataset:
        data["examples"] = {
            "dataset": config.examples_dataset,
            "split": config.examples_split,
            "count": config.examples_count,
        }
    header = "# Written by `babyhub space push`: the models this Space compares (the first is the baseline).\n"
    (staged / "models.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    card = SpaceCard.load(staged / "README.md")
    card.data.models = list(dict.fromkeys(m.source for m in config.models))
    card.data.datasets = [config.examples_dataset] if config.examples_dataset else None
    card.save(staged / "README.md")
    return staged


def push_chat_space(
    space_dir: str | Path,
    repo_id: str,
    *,
    models: str | None = None,
    examples_dataset: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
):
    """Push a Space folder as a Gradio Space (bundled with the scorer); for the chat Space, with `models`
    (`repo_id[@revision],...`, the first the baseline) and `examples_dataset` written into models.yaml and the
    card (default: the folder's models.yaml). Returns the PushResult (commit_oid None: nothing changed)."""
    from hub_tools.publish import check_repo_id
    from hub_tools.space_bundle import push_space

    space_dir = check_space_dir(Path(space_dir))
    check_repo_id(repo_id, "me/baby-chat")
    _, config = read_chat_config(space_dir, models, examples_dataset)
    with tempfile.TemporaryDirectory(prefix="babyhub-space-") as tmp:
        staged = stage_chat_space(space_dir, config, Path(tmp)) if config else space_dir
        return push_space(staged, repo_id, private=private, token=token, endpoint=endpoint)


# ------------------------------------------------------------------------------------------------ handlers
def run_push(args) -> int:
    # 1. Check the folder, the repo id and the models, stage the Space with them, bundle and push it.
    result = push_chat_space(
        args.space_dir,
        args.repo_id,
        models=args.models,
        examples_dataset=args.examples_dataset,
        private=args.private,
        endpoint=args.endpoint,
    )
    # 2. Say what the Space now holds.
    if result.commit_oid is None:
        print(f"{result.repo_id}: already up to date, no new commit ({result.url})")
    else:
        print(f"{result.repo_id}: pushed {args.space_dir} as commit {result.commit_oid} ({result.url})")
    return 0


def run_run(args) -> int:
    # 1. Check the folder and the configuration before starting a server.
    space_dir = check_space_dir(args.space_dir)
    chat, _ = read_chat_config(space_dir, args.models, args.examples_dataset)
    env = dict(os.environ)
    if chat is not None and args.models:
        env[chat.MODELS_ENV] = args.models
    if chat is not None and args.examples_dataset:
        env[chat.EXAMPLES_ENV] = args.examples_dataset
    env["GRADIO_SERVER_NAME"] = args.host
    if args.port is not None:
        env["GRADIO_SERVER_PORT"] = str(args.port)
    # 2. Serve it as the Spaces runtime does: `python app.py` in the folder. The app replaces this process,
    #    so Ctrl-C and signals reach the server directly and no orphan is left behind.
    port = env.get("GRADIO_SERVER_PORT", "7860")
    print(f"serving {space_dir} on http://{args.host}:{port} (Ctrl-C stops)", flush=True)
    os.chdir(space_dir)
    os.execve(sys.executable, [sys.executable, "app.py"], env)
