"""Staging and pushing a Space folder: the one "push a Space" of babyhub (the chat Space, the metric, any other).

A Space is pushed as a bundle (`hub_tools.spaces.bundle` places the babyhub modules it imports beside its
files); the chat Space is first staged with the models and examples it should offer (`spaces.chat`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hub_tools import repos
from hub_tools.errors import BabyhubError
from hub_tools.spaces.chat import check_publishable, read_chat_config, write_chat_config


def check_space_dir(space_dir: str | Path) -> Path:
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


def stage_space(
    space_dir: str | Path, out_dir: str | Path, *, models: str | None = None, examples_dataset: str | None = None
) -> Path:
    """The Space folder as it should be pushed: a Space other than the chat one as it is; the chat Space copied
    into `out_dir`, its models.yaml and card front matter naming `models` and `examples_dataset` (default: its
    models.yaml's)."""
    space_dir = check_space_dir(space_dir)
    _, config = read_chat_config(space_dir, models, examples_dataset)
    if config is None:
        return space_dir
    check_publishable(config)
    staged = Path(out_dir) / space_dir.name
    shutil.copytree(space_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    write_chat_config(staged, config)
    return staged


def push_space(
    space_dir: str | Path,
    repo_id: str,
    *,
    models: str | None = None,
    examples_dataset: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
):
    """Create (if needed) the Gradio Space `repo_id` and make it hold the bundle of `space_dir`.

    Args:
        space_dir: a Space folder (app.py, README.md with front matter), e.g. spaces/baby_chat.
        repo_id: the Space repo, NAMESPACE/NAME.
        models: chat Space only: `repo_id[@revision],...`, the first the baseline (default: its models.yaml).
        examples_dataset: chat Space only: the dataset (Hub id) of the eval split its examples come from.
        private: create the Space as private.
        token: a Hub token (default: the environment's).
        endpoint: the Hub (default: HF_ENDPOINT or huggingface.co).

    Returns:
        The `PushResult`; its `commit_oid` is None when the Space already held exactly this bundle.
    """
    from hub_tools.hub.publish import push_folder
    from hub_tools.spaces.bundle import build_space_bundle

    repos.check_repo_id(repo_id)
    name = Path(space_dir).name
    with tempfile.TemporaryDirectory(prefix="babyhub-space-") as tmp:
        staged = stage_space(space_dir, Path(tmp) / "staged", models=models, examples_dataset=examples_dataset)
        bundle = build_space_bundle(staged, Path(tmp) / "bundle" / name)
        return push_folder(
            bundle,
            repo_id,
            repo_type="space",
            private=private,
            token=token,
            endpoint=endpoint,
            commit_message=f"Upload Space {name} (bundled by babyhub)",
        )
