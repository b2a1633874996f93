"""The chat Space's configuration: which models it compares (the first is the baseline) and its examples.

The Space reads them from its `models.yaml`, or from `BABYHUB_SPACE_MODELS` / `BABYHUB_SPACE_EXAMPLES`; its own
module (`spaces/baby_chat/babychat.py`) parses them, so babyhub and the Space never disagree. Pushing the Space
writes the chosen models into the pushed `models.yaml` and into the card's `models:` / `datasets:` front matter,
so the same folder serves the local demo and huggingface.co.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hub_tools.errors import BabyhubError

CHAT_MODULE = "babychat.py"  # what makes a Space folder the chat Space


def load_chat_module(space_dir: Path) -> ModuleType | None:
    """The chat Space's helper module (babychat.py) of `space_dir`, or None for another kind of Space."""
    path = Path(space_dir) / CHAT_MODULE
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"babychat_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the module runs
    spec.loader.exec_module(module)
    return module


def read_chat_config(space_dir: Path, models: str | None = None, examples_dataset: str | None = None):
    """The chat module and its configuration with `models` / `examples_dataset` overriding models.yaml;
    (None, None) for another kind of Space, which takes no models."""
    chat = load_chat_module(space_dir)
    if chat is None:
        if models or examples_dataset:
            raise BabyhubError(
                f"{space_dir} is not the chat Space (it has no {CHAT_MODULE}): models and an examples dataset "
                "apply to spaces/baby_chat only"
            )
        return None, None
    env = {chat.MODELS_ENV: models or "", chat.EXAMPLES_ENV: examples_dataset or ""}
    try:
        return chat, chat.read_space_config(env=env, path=Path(space_dir) / "models.yaml")
    except chat.SpaceConfigError as err:
        raise BabyhubError(str(err)) from err


def check_publishable(config) -> None:
    """A Space on the Hub reads models and datasets from the Hub: local folders are refused, saying what to do."""
    local = [m.source for m in config.models if m.is_local]
    if local:
        raise BabyhubError(
            f"a Space cannot read the local folder(s) {local}: push them to the Hub first "
            "(babyhub push FOLDER --repo-type model --repo-id NS/NAME) and give their repo ids instead"
        )
    if config.examples_dataset and Path(config.examples_dataset).expanduser().is_dir():
        raise BabyhubError(
            f"a Space cannot read the local examples folder {config.examples_dataset}: push the eval split "
            "(babyhub push FOLDER --repo-id NS/NAME) and give its dataset repo id instead"
        )


def write_chat_config(staged: Path, config) -> None:
    """Write `config` into a staged copy of the chat Space: its models.yaml and its card's front matter."""
    import yaml
    from huggingface_hub import SpaceCard

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
