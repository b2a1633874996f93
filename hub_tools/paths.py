"""Where the project's non-Python folders live.

The templates (`dataset_cards/`, `model_cards/`) and the Spaces (`spaces/`) sit at the top of the
repository, beside `hub_tools/`, because they are published as they are. babyhub is installed from a
clone (`pip install -e .`), so they are found next to the package.
"""

from pathlib import Path

from hub_tools.errors import BabyhubError

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_CARDS = REPO_ROOT / "dataset_cards"
MODEL_CARDS = REPO_ROOT / "model_cards"
SPACES = REPO_ROOT / "spaces"
RECIPES = REPO_ROOT / "recipes"


def require_dir(path: Path) -> Path:
    """Return `path` if it is a folder, else explain that babyhub must be installed from a clone."""
    if not path.is_dir():
        raise BabyhubError(
            f"{path} is missing: babyhub reads its templates and Spaces from the repository it was installed "
            "from. Install it from a clone with `pip install -e .`."
        )
    return path
