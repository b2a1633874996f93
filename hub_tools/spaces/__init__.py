"""babyhub's Spaces (`spaces/` at the top of the repository): staging, pushing and running them.

- `push`: `push_space`, the one way a Space reaches a Hub (bundled by `hub_tools.spaces.bundle`);
- `chat`: the chat Space's models and examples, written into what is pushed;
- `run`: serving a Space folder locally as the Spaces runtime does.
"""

from hub_tools.paths import SPACES
from hub_tools.spaces.push import check_space_dir, push_space, stage_space
from hub_tools.spaces.run import SpaceRun, exec_space, prepare_space_run

CHAT_SPACE = SPACES / "baby_chat"
METRIC_SPACE = SPACES / "dialogue_minpairs"

__all__ = [
    "CHAT_SPACE",
    "METRIC_SPACE",
    "SpaceRun",
    "check_space_dir",
    "exec_space",
    "prepare_space_run",
    "push_space",
    "stage_space",
]
