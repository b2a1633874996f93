"""Running a Space folder locally as the Spaces runtime does: `python app.py` in the folder."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hub_tools.spaces.chat import read_chat_config
from hub_tools.spaces.push import check_space_dir


@dataclass(frozen=True)
class SpaceRun:
    """A checked Space folder and the environment its app runs in."""

    folder: Path
    env: dict[str, str]
    url: str


def prepare_space_run(
    space_dir: str | Path,
    *,
    models: str | None = None,
    examples_dataset: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> SpaceRun:
    """Check the folder and the chat Space's configuration (with the overrides) before any server starts."""
    space_dir = check_space_dir(space_dir)
    chat, _ = read_chat_config(space_dir, models, examples_dataset)
    env = dict(os.environ)
    if chat is not None and models:
        env[chat.MODELS_ENV] = models
    if chat is not None and examples_dataset:
        env[chat.EXAMPLES_ENV] = examples_dataset
    env["GRADIO_SERVER_NAME"] = host
    if port is not None:
        env["GRADIO_SERVER_PORT"] = str(port)
    return SpaceRun(space_dir, env, f"http://{host}:{env.get('GRADIO_SERVER_PORT', '7860')}")


def exec_space(run: SpaceRun) -> NoReturn:
    """Replace this process with the Space's app: Ctrl-C and signals reach the server directly, no orphan left."""
    os.chdir(run.folder)
    os.execve(sys.executable, [sys.executable, "app.py"], run.env)
