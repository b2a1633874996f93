"""Two models on the same pairs: both accuracies, their paired difference with its 95 % interval, McNemar's p.

`babyhub eval compare` and the demo's table use it. Comparing two accuracies measured on the *same* pairs as if
they were independent wastes most of the information: the pairs both models get right or both get wrong say
nothing about which is better, and the interval of the difference comes from the pairs on which they disagree
(`stats.compare_paired`: Newcombe's hybrid score interval and the exact McNemar test). Model A is the one being
judged and B the reference, so `difference = accuracy_a - accuracy_b` reads as A's gain over B.

BLiMP is compared on its pairs pooled over paradigms (the paired test needs one outcome per pair). The pooled
difference equals the difference of the macro-averages when every paradigm has the same number of pairs (BLiMP's
67 paradigms have 1,000 each, and `head_of_suite` keeps equal heads); `pooled_equals_macro` says whether it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from hub_tools import stats
from hub_tools.branches import Revision
from hub_tools.errors import BabyhubError
from hub_tools.evaluation.data import BlimpSuite, MinimalPairsData
from hub_tools.evaluation.sweep import BlimpResult, EvalModel, EvalRow, evaluate_revisions

# The record of a comparison (`--json`, the demo): these keys, in this order, then the 2 x 2 table.
COMPARISON_KEYS = [
    "dataset", "method", "n", "model_a", "revision_a", "model_b", "revision_b",
    "accuracy_a", "ci95_low_a", "ci95_high_a", "accuracy_b", "ci95_low_b", "ci95_high_b",
    "difference", "ci95_low", "ci95_high", "p_value",
]  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """Model A against model B on one dataset with one method: each row of the sweep, and their paired test."""

    row_a: EvalRow
    row_b: EvalRow
    paired: stats.PairedComparison

    @property
    def pooled_equals_macro(self) -> bool:
        """True for min-pairs; for BLiMP, whether every paradigm has as many pairs (pooled = macro difference)."""
        result = self.row_a.result
        return not isinstance(result, BlimpResult) or len({len(m) for m in result.margins.values()}) == 1

    def record(self) -> dict:
        """The flat record: COMPARISON_KEYS, then both_right, a_right_b_wrong, a_wrong_b_right, both_wrong,
        difference_interval (the interval's method) and, for BLiMP, pooled_equals_macro.

        `accuracy_a`/`accuracy_b` are the rows' accuracies (BLiMP: macro-averaged); `difference` is A - B over the
        pairs, so its interval is centred on it."""
        a, b, p = self.row_a.result, self.row_b.result, self.paired
        record = {
            "dataset": a.dataset,
            "method": a.method,
            "n": p.n,
            "model_a": self.row_a.model,
            "revision_a": self.row_a.revision.name,
            "model_b": self.row_b.model,
            "revision_b": self.row_b.revision.name,
            "accuracy_a": a.accuracy,
            "ci95_low_a": a.ci95_low,
            "ci95_high_a": a.ci95_high,
            "accuracy_b": b.accuracy,
            "ci95_low_b": b.ci95_low,
            "ci95_high_b": b.ci95_high,
            "difference": p.difference,
            "ci95_low": p.ci95_low,
            "ci95_high": p.ci95_high,
            "p_value": p.p_value,
        }
        table = asdict(p)
        record.update({k: table[k] for k in ("both_right", "a_right_b_wrong", "a_wrong_b_right", "both_wrong")})
        record["difference_interval"] = p.method
        if isinstance(a, BlimpResult):
            record["pooled_equals_macro"] = self.pooled_equals_macro
        return record


def compare_rows(row_a: EvalRow, row_b: EvalRow) -> Comparison:
    """The paired comparison of two sweep rows scored on the same pairs (same dataset, method and pair count).

    The difference, its interval and the p-value come from the pairs' outcomes; for BLiMP those are pooled over
    paradigms (the difference of the macro-averages when paradigms are equally large, see `pooled_equals_macro`).
    """
    a, b = row_a.result, row_b.result
    if (a.dataset, a.method, type(a)) != (b.dataset, b.method, type(b)):
        raise BabyhubError(
            f"cannot compare {row_a.model} on {a.dataset} ({a.method}) with {row_b.model} on {b.dataset} "
            f"({b.method}): a paired comparison needs both models scored on the same pairs with the same method"
        )
    if isinstance(a, BlimpResult) and list(a.margins) != list(b.margins):
        raise BabyhubError(f"cannot compare BLiMP results of {row_a.model} and {row_b.model}: their paradigms differ")
    outcomes_a, outcomes_b = a.outcomes, b.outcomes
    if not outcomes_a or len(outcomes_a) != len(outcomes_b):
        raise BabyhubError(
            f"cannot compare {row_a.model} and {row_b.model} on {a.dataset}: {len(outcomes_a)} and {len(outcomes_b)} "
            "per-pair outcomes; score both on the same pairs (results read back from a CSV have none)"
        )
    return Comparison(row_a, row_b, stats.compare_paired(outcomes_a, outcomes_b))


def compare_models(
    model_a: EvalModel,
    model_b: EvalModel,
    datasets: Sequence[MinimalPairsData | BlimpSuite],
    methods: Sequence[str] | None = None,
    *,
    revision_a: Revision | None = None,
    revision_b: Revision | None = None,
    progress: bool = True,
) -> list[Comparison]:
    """Score both models on the same pairs and compare them, per dataset and method.

    Args:
        model_a: the model being judged (e.g. a DPO model).
        model_b: the reference (e.g. the baseline).
        datasets: minimal pairs and/or BLiMP suites, as `evaluate_revisions` takes them.
        methods: scoring methods (None: each dataset's default).
        revision_a: A's revision (default: `main`).
        revision_b: B's revision (default: `main`).
        progress: show progress bars.

    Returns:
        One `Comparison` per dataset and method, in the order `evaluate_revisions` scores them.
    """
    rows_a = evaluate_revisions(model_a, [revision_a or Revision("main")], datasets, methods, progress=progress)
    rows_b = evaluate_revisions(model_b, [revision_b or Revision("main")], datasets, methods, progress=progress)
    return [compare_rows(a, b) for a, b in zip(rows_a, rows_b, strict=True)]
