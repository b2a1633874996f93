"""The names of checkpoint branches (`checkpoint-<step>`), shared by training, pushing and evaluation.

Standard library only, so that it stands alone wherever it is copied (a Space bundle places every hub_tools
module its code imports, and refuses those that need the rest of babyhub).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHECKPOINT_BRANCH = re.compile(r"checkpoint-(\d+)\Z")


def checkpoint_branch(step: int) -> str:
    """The branch of the checkpoint saved at `step`."""
    return f"checkpoint-{step}"


def checkpoint_step(name: str) -> int | None:
    """The step of a `checkpoint-<step>` branch or folder name; None for any other name."""
    match = CHECKPOINT_BRANCH.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Revision:
    """One revision of a model repo: its name, the training step it holds (None when unknown), its commit.

    A `checkpoint-<step>` branch knows its step from its name; `main` knows it only from its
    `trainer_state.json`, and a local folder has no revision at all.
    """

    name: str
    step: int | None = None
    commit: str | None = None

    @classmethod
    def of_branch(cls, name: str, commit: str | None = None, step: int | None = None) -> Revision:
        """The revision of a branch, its step taken from a `checkpoint-<step>` name unless given."""
        return cls(name, checkpoint_step(name) if step is None else step, commit)


def by_step(revisions: list[Revision]) -> list[Revision]:
    """Revisions in training order: by step, unknown steps after every known one, `main` last among equals."""
    last = max((r.step for r in revisions if r.step is not None), default=0)
    return sorted(revisions, key=lambda r: (r.step if r.step is not None else last + 1, r.name != "main", r.name))
