"""What people look at after a sweep: a CSV, a plot of accuracy against step, and the model cards' results.

Each takes the sweep's rows (`EvalRow`, or their flat records) and can be called on its own. Every accuracy
comes with its 95 % interval (`ci95_low`, `ci95_high`): in the CSV, as the plot's band, and in the cards'
`model-index` as two metrics beside the accuracy (the model-index has no field for an interval).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.evaluation.sweep import BlimpResult, EvalRow, MinpairsResult

SWEEP_COLUMNS = ["model", "revision", "step", "dataset", "method", "accuracy", "ci95_low", "ci95_high", "n"]
# The model-index metric types of an accuracy's interval bounds (beside `accuracy`).
CI95_LOW_METRIC, CI95_HIGH_METRIC = "accuracy_ci95_low", "accuracy_ci95_high"


def _records(rows: Sequence[EvalRow | dict]) -> list[dict]:
    return [row.record() if isinstance(row, EvalRow) else row for row in rows]


# ---------------------------------------------------------------------------------------- tables and plots
def sweep_stem(out_dir: str | Path, target: str, model: str) -> Path:
    """Where a sweep's files go: `out_dir/<target>_<model with unsafe characters replaced>` (add a suffix)."""
    return Path(out_dir) / f"{target}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}"


def write_sweep_csv(rows: Sequence[EvalRow | dict], path: str | Path) -> Path:
    """One row per model, revision, dataset and method: SWEEP_COLUMNS (accuracy, its 95 % interval, pairs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, SWEEP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_records(rows))
    tmp.replace(path)  # never leave a half-written table
    return path


def plot_sweep(
    rows: Sequence[EvalRow | dict],
    out: str | Path,
    *,
    title: str = "",
    formats: Sequence[str] = ("png",),
    steps_per_epoch: float | None = None,
) -> list[Path]:
    """Accuracy against training step with its 95 % band, one panel per dataset and method, one colour per model
    (`plots.plot_accuracy`); `out` is the path without suffix. Returns the files, one per format."""
    from hub_tools.evaluation.plots import plot_accuracy

    return plot_accuracy(_records(rows), out, formats=formats, title=title, steps_per_epoch=steps_per_epoch)


def read_steps_per_epoch(model_id: str, revisions: Sequence, *, token: str | None = None) -> float | None:
    """Optimizer steps per epoch of a training run, from the `trainer_state.json` of its latest revision with a
    step (`global_step / epoch`), or None when no revision has one (a plot then has no epoch axis)."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    if Path(model_id).exists():
        state = Path(model_id) / "trainer_state.json"
        paths = [state] if state.is_file() else []
    else:
        stepped = sorted((r for r in revisions if r.step), key=lambda r: r.step)
        paths = []
        if stepped:
            revision = stepped[-1].commit or stepped[-1].name
            try:
                paths.append(Path(hf_hub_download(model_id, "trainer_state.json", revision=revision, token=token)))
            except (EntryNotFoundError, RevisionNotFoundError):
                pass
    for path in paths:
        state = json.loads(path.read_text(encoding="utf-8"))
        step, epoch = state.get("global_step"), state.get("epoch")
        if step and epoch:
            return step / epoch
    return None


# ---------------------------------------------------------------------------------------------- cards
def minpairs_eval_result(result: MinpairsResult, *, dataset_revision: str | None = None):
    """The `model-index` entry of a dialogue minimal-pair accuracy (the scoring method is the metric config).

    Use `minpairs_eval_results` for the accuracy with its interval bounds (what babyhub writes into cards).
    """
    return minpairs_eval_results(result, dataset_revision=dataset_revision)[0]


def minpairs_eval_results(result: MinpairsResult, *, dataset_revision: str | None = None) -> list:
    """The `model-index` entries of a dialogue minimal-pair accuracy: the accuracy, then its 95 % interval's low
    and high bound as two metrics of their own (`accuracy_ci95_low`, `accuracy_ci95_high`; Wilson's interval)."""
    return _with_interval(
        result,
        task_name="Dialogue minimal pairs",
        dataset_type=result.dataset,
        dataset_name=result.dataset,
        dataset_revision=dataset_revision,
        metric_name=f"min-pair accuracy ({result.method})",
    )


def blimp_eval_result(result: BlimpResult):
    """The `model-index` entry of a BLiMP macro-averaged accuracy (`blimp_eval_results`: with its interval)."""
    return blimp_eval_results(result)[0]


def blimp_eval_results(result: BlimpResult) -> list:
    """The `model-index` entries of a BLiMP macro-averaged accuracy and its 95 % interval (a stratified bootstrap
    over pairs within paradigms), when the result has one."""
    return _with_interval(
        result,
        task_name="BLiMP",
        dataset_type="blimp",
        dataset_name="BLiMP",
        metric_name=f"BLiMP accuracy, macro-averaged ({result.method})",
    )


def _with_interval(result: MinpairsResult | BlimpResult, *, metric_name: str, **dataset) -> list:
    from huggingface_hub import EvalResult

    def entry(metric_type: str, name: str, value: float):
        return EvalResult(
            task_type="text-classification",
            metric_type=metric_type,
            metric_name=name,
            metric_config=result.method,
            metric_value=round(value, 4),
            **dataset,
        )

    entries = [entry("accuracy", metric_name, result.accuracy)]
    if result.ci95_low is not None and result.ci95_high is not None:
        what = f"{result.interval} interval" if result.interval else "interval"
        entries.append(entry(CI95_LOW_METRIC, f"{metric_name}, 95 % {what}, low", result.ci95_low))
        entries.append(entry(CI95_HIGH_METRIC, f"{metric_name}, 95 % {what}, high", result.ci95_high))
    return entries


def merge_eval_results(card_text: str, results: Sequence, *, model_name: str) -> str:
    """The card with `results` added to its `model-index` (same metric -> value replaced), all else kept."""
    from huggingface_hub import ModelCard

    card = ModelCard(card_text, ignore_metadata_errors=False)
    merged = list(card.data.eval_results or [])
    for new in results:
        merged = [old for old in merged if not old.is_equal_except_value(new)]
        merged.append(new)
    card.data.eval_results = merged
    card.data.model_name = card.data.model_name or model_name
    return str(card)


@dataclass
class PushedResults:
    """What `push_results` did on one revision: the new commit (None: the card already had these results), and
    the pull request it opened instead of a commit, if any."""

    commit: str | None
    pr_url: str | None = None


def push_results(
    rows: Sequence[EvalRow], *, token: str | None = None, create_pr: bool | str = "auto"
) -> dict[str, PushedResults]:
    """Add each revision's results (accuracy and 95 % interval) to the `model-index` of the card on that revision
    (one commit per revision, only README.md; nothing else of the card changes). The rows are one model's, as
    `evaluate_revisions` gives.

    Args:
        rows: the sweep's rows.
        token: a Hub token (default: the environment's).
        create_pr: True: propose every card as a pull request on its revision; "auto" (default): commit, and open
            a pull request where the token may not write the model (results for a model one does not own).

    Returns:
        Revision name -> `PushedResults` (the commit, or the pull request opened).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from hub_tools.hub.publish import push_files

    models = sorted({row.model for row in rows})
    if len(models) != 1:
        raise BabyhubError(f"push_results takes the rows of one model, not of {len(models)} ({', '.join(models)})")
    (model_id,) = models
    if Path(model_id).exists():
        raise BabyhubError(f"{model_id} is a local folder, which has no card on the Hub: push the model first")
    by_revision: dict[str, list] = {}
    for row in rows:
        result = row.result
        entries = minpairs_eval_results(result) if isinstance(result, MinpairsResult) else blimp_eval_results(result)
        by_revision.setdefault(row.revision.name, []).extend(entries)
    pushed = {}
    for revision, results in by_revision.items():
        try:
            text = Path(hf_hub_download(model_id, "README.md", revision=revision, token=token)).read_text()
        except EntryNotFoundError:
            text = f"# {model_id.split('/')[-1]}\n\nEvaluation results added by `babyhub eval`.\n"
        updated = merge_eval_results(text, results, model_name=model_id.split("/")[-1])
        result = push_files(
            {"README.md": updated.encode()},
            model_id,
            revision=revision,
            token=token,
            create_pr=create_pr,
            commit_message=f"Add evaluation results ({', '.join(sorted({r.metric_config for r in results}))})",
        )
        pushed[revision] = PushedResults(result.commit_oid, result.pr_url)
    return pushed
