"""Evaluation of babies on dialogue minimal pairs and BLiMP, for one revision or a whole training run.

- `data`: reading what is evaluated (minimal-pair CSVs, dataset folders or Hub ids; BLiMP folders);
- `sweep`: `evaluate_revisions`, a model × revisions × datasets × methods -> rows, used by `babyhub eval` and
  the demo (the scoring is `hub_tools.scoring`, which the `dialogue_minpairs` metric ships);
- `results`: what people look at: a CSV, a plot of accuracy against step, the `model-index` of model cards;
- `compare`: two models on the same pairs, their paired difference with its 95 % interval and McNemar's p.

Every accuracy carries its 95 % interval (`ci95_low`, `ci95_high`; see hub_tools/stats.py). A new scoring method
goes into `scoring.METHODS`; the method lists here derive from it.
"""

from hub_tools.evaluation.compare import COMPARISON_KEYS, Comparison, compare_models, compare_rows
from hub_tools.evaluation.data import (
    BlimpSuite,
    MinimalPairsData,
    head_of_suite,
    read_blimp_suite,
    read_minpairs_data,
)
from hub_tools.evaluation.results import (
    SWEEP_COLUMNS,
    PushedResults,
    blimp_eval_result,
    blimp_eval_results,
    merge_eval_results,
    minpairs_eval_result,
    minpairs_eval_results,
    plot_sweep,
    push_results,
    read_steps_per_epoch,
    sweep_stem,
    write_sweep_csv,
)
from hub_tools.evaluation.sweep import (
    BLIMP_METHODS,
    DEFAULT_BLIMP_METHOD,
    DEFAULT_MINPAIR_METHOD,
    EVAL_BATCH_SIZE,
    MINPAIR_METHODS,
    BlimpResult,
    EvalModel,
    EvalRow,
    MinpairsResult,
    evaluate_blimp,
    evaluate_minpairs,
    evaluate_revisions,
    select_revisions,
)

__all__ = [
    "BLIMP_METHODS",
    "COMPARISON_KEYS",
    "DEFAULT_BLIMP_METHOD",
    "DEFAULT_MINPAIR_METHOD",
    "EVAL_BATCH_SIZE",
    "MINPAIR_METHODS",
    "SWEEP_COLUMNS",
    "BlimpResult",
    "BlimpSuite",
    "Comparison",
    "EvalModel",
    "EvalRow",
    "MinimalPairsData",
    "MinpairsResult",
    "PushedResults",
    "blimp_eval_result",
    "blimp_eval_results",
    "compare_models",
    "compare_rows",
    "evaluate_blimp",
    "evaluate_minpairs",
    "evaluate_revisions",
    "head_of_suite",
    "merge_eval_results",
    "minpairs_eval_result",
    "minpairs_eval_results",
    "plot_sweep",
    "push_results",
    "read_blimp_suite",
    "read_minpairs_data",
    "read_steps_per_epoch",
    "select_revisions",
    "sweep_stem",
    "write_sweep_csv",
]
