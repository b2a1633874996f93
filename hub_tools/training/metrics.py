"""The training metrics of a run: every log row in `logs/training_metrics.csv`, and the row a card states.

The CSV has `step` then every key the trainer logged (the union over rows, in first-seen order); `babyhub plots`
draws it and the main card links its curves. `MetricsLog` keeps it up to date by appending rows as they are
logged (its code sits with the CSV reader in `hub_tools.evaluation.plots` until the layout moves both here).
"""

from __future__ import annotations

from pathlib import Path

from hub_tools.evaluation.plots import MetricsLog

__all__ = ["MetricsLog", "metrics_at", "metrics_path"]


def metrics_path(metrics_file: str | Path, output_dir: str | Path) -> Path:
    """Where the log rows go: `metrics_file`, relative to `output_dir` unless absolute."""
    path = Path(metrics_file)
    return path if path.is_absolute() else Path(output_dir) / path


def metrics_at(log_history: list[dict], step: int) -> dict:
    """The last training log row at or before `step` (TRL's keys), or {} when none was logged yet."""
    rows = [r for r in log_history if "loss" in r and r.get("step", 0) <= step]
    return dict(rows[-1]) if rows else {}
