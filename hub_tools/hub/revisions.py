"""The revisions of a model repo on a Hub: its `checkpoint-<step>` branches and `main`, in training order.

One lister for training (which checkpoints are already pushed), evaluation (every checkpoint of a run) and the
demo. The chat Space keeps a small lister of its own, because it ships alone, but orders with the same
`branches.Revision`.
"""

from __future__ import annotations

import json
from pathlib import Path

from hub_tools.branches import Revision, by_step, checkpoint_step
from hub_tools.errors import BabyhubError


def list_revisions(
    repo_id: str, *, token: str | None = None, missing_ok: bool = False, main_step: bool = True
) -> list[Revision]:
    """Every `checkpoint-<step>` branch and `main` of a model repo, ordered by step.

    Args:
        repo_id: the model repo, `NAMESPACE/NAME`.
        token: a Hub token (default: the environment's).
        missing_ok: return `[]` for a repo that does not exist (yet), instead of raising.
        main_step: read `main`'s step from its `trainer_state.json` (one download); `main` goes last when unknown.

    Returns:
        The revisions, each with its step and commit; other branches are left out.

    Raises:
        BabyhubError: the repo does not exist (unless `missing_ok`), or the Hub cannot be reached.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = HfApi(token=token).list_repo_refs(repo_id)
    except RepositoryNotFoundError as err:
        if missing_ok:
            return []
        raise BabyhubError(
            f"model repo {repo_id} not found on {constants.ENDPOINT}; check the id and HF_ENDPOINT"
        ) from err
    except Exception as err:  # a connection error: say where, before any long work starts
        raise BabyhubError(
            f"cannot reach the Hub at {constants.ENDPOINT} to list the branches of {repo_id} "
            f"({type(err).__name__}: {err}); start the local hub (`babyhub hub serve`) or check HF_ENDPOINT "
            "and HF_TOKEN"
        ) from err
    revisions = [
        Revision.of_branch(b.name, b.target_commit) for b in refs.branches if checkpoint_step(b.name) is not None
    ]
    main = next((b for b in refs.branches if b.name == "main"), None)
    if main is not None:
        step = read_trained_step(repo_id, "main", token=token) if main_step else None
        revisions.append(Revision("main", step, main.target_commit))
    return by_step(revisions)


def read_trained_step(repo_id: str, revision: str, *, token: str | None = None) -> int | None:
    """The training step of a revision from its `trainer_state.json`, or None if it has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, "trainer_state.json", revision=revision, token=token)
    except EntryNotFoundError:
        return None
    return json.loads(Path(path).read_text()).get("global_step")
