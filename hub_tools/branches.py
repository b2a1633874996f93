"""The names of checkpoint branches (`checkpoint-<step>`), shared by training, pushing and evaluation.

Standard library only, so that it stands alone wherever it is copied (a Space bundle places every hub_tools
module its code imports, and refuses those that need the rest of babyhub).
"""

import re

CHECKPOINT_BRANCH = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_branch(step: int) -> str:
    """The branch of the checkpoint saved at `step`."""
    return f"checkpoint-{step}"


def checkpoint_step(name: str) -> int | None:
    """The step of a `checkpoint-<step>` branch or folder name; None for any other name."""
    match = CHECKPOINT_BRANCH.match(name)
    return int(match.group(1)) if match else None
