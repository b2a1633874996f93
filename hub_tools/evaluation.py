"""Evaluation of babies on dialogue minimal pairs and BLiMP, for one revision or a whole training run.

The scoring itself is `hub_tools.scoring` (the same code the `dialogue_minpairs` metric ships), so
`babyhub eval`, the metric and the cards give the same accuracies. This module reads the data, runs
the scorer with a progress bar, sweeps checkpoint branches, and writes results people look at: a CSV,
a plot of accuracy against step, and the `model-index` of a model card.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hub_tools.branches import checkpoint_step
from hub_tools.dialogue import TURN_SEPARATOR
from hub_tools.errors import BabyhubError
from hub_tools.scoring import METHODS, Scorer, compare_pairs, score_minimal_pairs

BLIMP_METHODS = ("sequence_sum_bow", "sequence_mean")
SWEEP_COLUMNS = ["model", "revision", "step", "dataset", "method", "accuracy"]


@dataclass
class MinimalPairsData:
    """Minimal pairs to evaluate: a name (for tables and cards) and three aligned columns."""

    name: str
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]


@dataclass
class Revision:
    """One revision of a model repo; `step` is None when it is not known (e.g. `main` without trainer state)."""

    name: str
    step: int | None


@dataclass
class MinpairsResult:
    dataset: str
    method: str
    accuracy: float
    n: int
    ties: int


@dataclass
class BlimpResult:
    method: str
    accuracy: float  # macro-average over paradigms, as the original work reports it
    n: int
    paradigms: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ reading
def read_minpairs_data(data: str, *, split: str = "train", revision: str | None = None) -> MinimalPairsData:
    """Minimal pairs from a CSV in the published format, a dataset folder, or a Hub dataset id."""
    path = Path(data)
    if path.suffix == ".csv":
        from hub_tools.minpairs import read_minimal_pairs

        if not path.is_file():
            raise BabyhubError(f"--data {data}: file not found; give a minimal-pair CSV, a dataset folder or a Hub id")
        pairs = read_minimal_pairs(path).pairs
        return MinimalPairsData(
            path.stem, [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs]
        )
    import datasets

    try:
        table = datasets.load_dataset(str(data), split=split, revision=revision)
    except (FileNotFoundError, ValueError) as err:
        raise BabyhubError(
            f"--data {data}: could not load split {split!r} ({err}); give a minimal-pair CSV, a dataset folder "
            "with prompt/chosen/rejected columns, or a Hub dataset id"
        ) from err
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in table.column_names]
    if missing:
        raise BabyhubError(
            f"--data {data}: split {split!r} has no column {', '.join(missing)} (it has {table.column_names}); "
            "minimal pairs need prompt, chosen and rejected"
        )
    name = path.name if path.exists() else str(data)
    return MinimalPairsData(name, list(table["prompt"]), list(table["chosen"]), list(table["rejected"]))


def read_blimp_suite(suite_dir: str | Path, *, lower_case: bool = False) -> dict[str, tuple[list[str], list[str]]]:
    """BLiMP paradigms from a folder of `<paradigm>.txt` files (grammatical line, then ungrammatical line)."""
    suite = Path(suite_dir)
    files = sorted(suite.glob("*.txt")) if suite.is_dir() else []
    if not files:
        raise BabyhubError(f"--suite {suite}: no <paradigm>.txt files found; give the BLiMP folder")
    paradigms = {}
    for file in files:
        lines = file.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise BabyhubError(
                    f"{file}, line {number}: empty line; every line must be a sentence (lines come in pairs)"
                )
        if len(lines) % 2:
            raise BabyhubError(
                f"{file}: {len(lines)} lines, an odd number; lines come in pairs (grammatical, then ungrammatical)"
            )
        if lower_case:
            lines = [line.lower() for line in lines]
        paradigms[file.stem] = (lines[0::2], lines[1::2])
    return paradigms


# ----------------------------------------------------------------------------------------------- scoring
class _PairProgress:
    """A tqdm bar counted in pairs, fed with the number of texts each scored batch held (two per pair)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="pair", disable=not enabled, leave=False)
        self.texts = 0

    def __call__(self, texts: int) -> None:
        self.texts += texts
        self.bar.update(self.texts // 2 - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def evaluate_minpairs(
    scorer: Scorer, data: MinimalPairsData, method: str = "sequence_mean", *, progress: bool = True
) -> MinpairsResult:
    """Accuracy of `scorer` on minimal pairs: the chosen (real) answer must score strictly higher."""
    n = len(data.prompts)
    if n == 0:
        raise BabyhubError(f"dataset {data.name} has no pairs")
    for column, texts in (("prompt", data.prompts), ("chosen", data.chosen), ("rejected", data.rejected)):
        row = _first_empty(texts)
        if row is not None:
            raise BabyhubError(f"dataset {data.name}, row {row}: `{column}` is empty; fill it in or drop the row")
    with _PairProgress(n, f"{data.name} {method}", progress) as tick:
        try:
            chosen, rejected = score_minimal_pairs(
                scorer,
                data.prompts,
                data.chosen,
                data.rejected,
                method=method,
                separator=TURN_SEPARATOR,
                progress=tick,
            )
        except ValueError as err:
            raise BabyhubError(f"dataset {data.name}: {err}") from err
    result = compare_pairs(chosen, rejected)
    return MinpairsResult(data.name, method, result["accuracy"], result["n"], result["ties"])


def evaluate_blimp(
    scorer: Scorer,
    suite: dict[str, tuple[list[str], list[str]]],
    method: str = "sequence_sum_bow",
    *,
    progress: bool = True,
) -> BlimpResult:
    """Per-paradigm accuracy (grammatical sentence scores strictly higher) and their macro-average."""
    if method not in BLIMP_METHODS:
        raise BabyhubError(f"BLiMP is scored with a sequence method ({', '.join(BLIMP_METHODS)}), not {method!r}")
    reduction, bow = ("sum", True) if method == "sequence_sum_bow" else ("mean", False)
    if not suite:
        raise BabyhubError("the BLiMP suite has no paradigms")
    # All paradigms in one call: the scorer fills whole batches and shares the beginnings that sentences of a
    # paradigm have in common, instead of 67 calls of a few batches each.
    good_all: list[str] = []
    bad_all: list[str] = []
    ends = {}
    for name, (good, bad) in suite.items():
        if not good or len(good) != len(bad):
            raise BabyhubError(
                f"BLiMP paradigm {name}: {len(good)} grammatical and {len(bad)} ungrammatical sentences; "
                "give at least one pair, the grammatical sentence first"
            )
        for kind, texts in (("grammatical", good), ("ungrammatical", bad)):
            pair = _first_empty(texts)
            if pair is not None:
                raise BabyhubError(f"BLiMP paradigm {name}, pair {pair}: the {kind} sentence is empty")
        good_all += good
        bad_all += bad
        ends[name] = len(good_all)
    with _PairProgress(len(good_all), f"BLiMP {method}", progress) as tick:
        try:
            good_scores, bad_scores = scorer.pair_sequence_scores(
                good_all, bad_all, reduction=reduction, bow_correction=bow, progress=tick
            )
        except ValueError as err:
            raise BabyhubError(f"BLiMP: {err}") from err
    accuracies, start = {}, 0
    for name, end in ends.items():
        accuracies[name] = compare_pairs(good_scores[start:end], bad_scores[start:end])["accuracy"]
        start = end
    macro = sum(accuracies.values()) / len(accuracies)
    return BlimpResult(method, macro, len(good_all), accuracies)


def _first_empty(texts: Sequence[str]) -> int | None:
    """Index of the first text that is not a string or is only whitespace (the scorer refuses those)."""
    return next((i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()), None)


# --------------------------------------------------------------------------------------------- revisions
def list_revisions(model_id: str, *, token: str | None = None) -> list[Revision]:
    """Every `checkpoint-<step>` branch and `main`, ordered by step (`main` last when its step is unknown)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(token=token)
    try:
        branches = [b.name for b in api.list_repo_refs(model_id).branches]
    except RepositoryNotFoundError as err:
        raise BabyhubError(
            f"--model {model_id}: no such model repo on the Hub; check the id (and HF_ENDPOINT)"
        ) from err
    revisions = [Revision(b, checkpoint_step(b)) for b in branches if checkpoint_step(b) is not None]
    if "main" in branches:
        revisions.append(Revision("main", read_trained_step(model_id, "main", token=token)))
    last = max((r.step for r in revisions if r.step is not None), default=0)
    return sorted(revisions, key=lambda r: (r.step if r.step is not None else last + 1, r.name != "main"))


def read_trained_step(model_id: str, revision: str, *, token: str | None = None) -> int | None:
    """The training step of a revision from its `trainer_state.json`, or None if it has none."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(model_id, "trainer_state.json", revision=revision, token=token)
    except EntryNotFoundError:
        return None
    return json.loads(Path(path).read_text()).get("global_step")


# ---------------------------------------------------------------------------------------- tables and plots
def write_sweep_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """One row per model, revision, dataset and method: model,revision,step,dataset,method,accuracy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, SWEEP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)  # never leave a half-written table
    return path


def plot_sweep(rows: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Accuracy against training step, one line per dataset and method; `main` without a step is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    series = sorted({(r["dataset"], r["method"]) for r in rows})
    for dataset, method in series:
        points = [r for r in rows if (r["dataset"], r["method"]) == (dataset, method)]
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


def push_results_to_card(model_id: str, revision: str, results: Sequence, *, token: str | None = None):
    """Add `results` to the model-index of the card on `revision` of `model_id` (one commit, only README.md)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from hub_tools.publish import push_files

    try:
        text = Path(hf_hub_download(model_id, "README.md", revision=revision, token=token)).read_text()
    except EntryNotFoundError:
        text = f"# {model_id.split('/')[-1]}\n\nEvaluation results added by `babyhub eval`.\n"
    updated = merge_eval_results(text, results, model_name=model_id.split("/")[-1])
    return push_files(
        {"README.md": updated.encode()},
        model_id,
        revision=revision,
        token=token,
        commit_message=f"Add evaluation results ({', '.join(sorted({r.metric_config for r in results}))})",
    )


def result_row(model: str, revision: Revision, result: MinpairsResult | BlimpResult) -> dict:
    """A sweep-table row (and the JSON record) of one result."""
    return {"model": model, "revision": revision.name, "step": revision.step, **asdict(result)}


__all__ = [
    "METHODS",
    "BlimpResult",
    "MinimalPairsData",
    "MinpairsResult",
    "Revision",
    "evaluate_blimp",
    "evaluate_minpairs",
    "list_revisions",
    "merge_eval_results",
    "plot_sweep",
    "push_results_to_card",
    "read_blimp_suite",
    "read_minpairs_data",
    "write_sweep_csv",
]
