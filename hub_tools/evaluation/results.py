"""What people look at after a sweep: a CSV, a plot of accuracy against step, and the model cards' results.

Each takes the sweep's rows (`EvalRow`, or their flat records) and can be called on its own.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.evaluation.sweep import BlimpResult, EvalRow, MinpairsResult

SWEEP_COLUMNS = ["model", "revision", "step", "dataset", "method", "accuracy"]


def _records(rows: Sequence[EvalRow | dict]) -> list[dict]:
    return [row.record() if isinstance(row, EvalRow) else row for row in rows]


# ---------------------------------------------------------------------------------------- tables and plots
def sweep_stem(out_dir: str | Path, target: str, model: str) -> Path:
    """Where a sweep's files go: `out_dir/<target>_<model with unsafe characters replaced>` (add a suffix)."""
    return Path(out_dir) / f"{target}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}"


def write_sweep_csv(rows: Sequence[EvalRow | dict], path: str | Path) -> Path:
    """One row per model, revision, dataset and method: model,revision,step,dataset,method,accuracy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, SWEEP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_records(rows))
    tmp.replace(path)  # never leave a half-written table
    return path


def plot_sweep(rows: Sequence[EvalRow | dict], path: str | Path, *, title: str = "") -> Path:
    """Accuracy against training step, one line per dataset and method; `main` without a step is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _records(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    series = sorted({(r["dataset"], r["method"]) for r in records})
    for dataset, method in series:
        points = [r for r in records if (r["dataset"], r["method"]) == (dataset, method)]
        stepped = sorted((r["step"], r["accuracy"]) for r in points if r["step"] not in (None, ""))
        label = f"{dataset} · {method}"
        line = None
        if stepped:
            (line,) = ax.plot(*zip(*stepped, strict=True), marker="o", label=label)
        for r in points:
            if r["step"] in (None, ""):
                color = line.get_color() if line is not None else None
                ax.axhline(r["accuracy"], linestyle="--", color=color, label=f"{label} ({r['revision']})")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- cards
def minpairs_eval_result(result: MinpairsResult, *, dataset_revision: str | None = None):
    """The `model-index` entry of a dialogue minimal-pair accuracy (the scoring method is the metric config)."""
    from huggingface_hub import EvalResult

    return EvalResult(
        task_type="text-classification",
        task_name="Dialogue minimal pairs",
        dataset_type=result.dataset,
        dataset_name=result.dataset,
        dataset_revision=dataset_revision,
        metric_type="accuracy",
        metric_name=f"min-pair accuracy ({result.method})",
        metric_config=result.method,
        metric_value=round(result.accuracy, 4),
    )


def blimp_eval_result(result: BlimpResult):
    """The `model-index` entry of a BLiMP macro-averaged accuracy."""
    from huggingface_hub import EvalResult

    return EvalResult(
        task_type="text-classification",
        task_name="BLiMP",
        dataset_type="blimp",
        dataset_name="BLiMP",
        metric_type="accuracy",
        metric_name=f"BLiMP accuracy, macro-averaged ({result.method})",
        metric_config=result.method,
        metric_value=round(result.accuracy, 4),
    )


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


def push_results(rows: Sequence[EvalRow], *, token: str | None = None) -> dict[str, str | None]:
    """Add each revision's results to the `model-index` of the card on that revision (one commit per revision,
    only README.md; nothing else of the card changes). The rows are one model's, as `evaluate_revisions` gives.

    Args:
        rows: the sweep's rows.
        token: a Hub token (default: the environment's).

    Returns:
        Revision name -> the new commit, or None where the card already had these results.
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
        entry = minpairs_eval_result(result) if isinstance(result, MinpairsResult) else blimp_eval_result(result)
        by_revision.setdefault(row.revision.name, []).append(entry)
    pushed = {}
    for revision, results in by_revision.items():
        try:
            text = Path(hf_hub_download(model_id, "README.md", revision=revision, token=token)).read_text()
        except EntryNotFoundError:
            text = f"# {model_id.split('/')[-1]}\n\nEvaluation results added by `babyhub eval`.\n"
        updated = merge_eval_results(text, results, model_name=model_id.split("/")[-1])
        pushed[revision] = push_files(
            {"README.md": updated.encode()},
            model_id,
            revision=revision,
            token=token,
            commit_message=f"Add evaluation results ({', '.join(sorted({r.metric_config for r in results}))})",
        ).commit_oid
    return pushed
