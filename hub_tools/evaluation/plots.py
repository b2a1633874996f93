"""Loss and reward curves of DPO runs, from `logs/training_metrics.csv` files.

A metrics file is `step` followed by the keys the trainer logged (the original work's format). TRL
versions differ in what they log and how they spell it (`rewards/chosen`, `train/rewards/chosen`,
`train_rewards/chosen`...), so columns are normalised and a figure draws whatever a run has: several
runs share one figure, each in its own colour.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hub_tools.errors import BabyhubError

# One figure per entry: file name, title, and (column, line style) series.
FIGURES = {
    "loss.png": ("DPO loss", [("loss", "-")]),
    "rewards.png": (
        "Rewards: chosen (solid) vs rejected (dashed)",
        [("rewards/chosen", "-"), ("rewards/rejected", "--")],
    ),
    "margins.png": ("Reward margin (chosen - rejected)", [("rewards/margins", "-")]),
    "accuracies.png": ("Reward accuracy (chosen > rejected)", [("rewards/accuracies", "-")]),
}
_PREFIX = re.compile(r"^(train[/_])")


def normalise_column(name: str) -> str:
    """`train/rewards/chosen` and `train_rewards/chosen` -> `rewards/chosen`; `train_loss` stays (summary)."""
    name = name.strip()
    if name in ("train_loss", "train_runtime"):
        return name
    return _PREFIX.sub("", name)


def read_metrics(path: str | Path):
    """A metrics CSV as a DataFrame with normalised columns, rows with a step, sorted by step."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise BabyhubError(f"{path}: no such metrics file; pass the logs/training_metrics.csv of a run.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise BabyhubError(f"{path}: not a readable CSV ({err}); pass a training_metrics.csv file.") from err
    frame.columns = [normalise_column(c) for c in frame.columns]
    if "step" not in frame.columns:
        raise BabyhubError(f"{path}: no `step` column (columns: {list(frame.columns)}); is this a metrics file?")
    frame = frame.T.groupby(level=0).first().T  # merge duplicate columns after normalising (first non-null)
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return frame.dropna(subset=["step"]).sort_values("step").reset_index(drop=True)


def build_figures(runs: Sequence, names: Sequence[str]) -> dict:
    """{file name: matplotlib Figure} for every figure at least one run has data for (pure: nothing written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figures = {}
    for filename, (title, series) in FIGURES.items():
        if not any(col in run.columns and run[col].notna().any() for run in runs for col, _ in series):
            continue  # no run logged this: no empty figure
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for i, (run, name) in enumerate(zip(runs, names, strict=True)):
            for col, style in series:
                if col in run.columns and run[col].notna().any():
                    rows = run[["step", col]].dropna()
                    label = name if len(series) == 1 else f"{name} {col.split('/')[-1]}"
                    ax.plot(rows["step"], rows[col], style, color=colours[i % len(colours)], label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        figures[filename] = fig
    return figures


def plot_metrics(
    metrics_files: Sequence[str | Path], out_dir: str | Path, *, labels: Sequence[str] | None = None
) -> list[Path]:
    """Draw loss, rewards, margins and accuracies of one or more runs as PNGs in `out_dir`; returns their paths."""
    import matplotlib.pyplot as plt

    files = [Path(f) for f in metrics_files]
    if not files:
        raise BabyhubError("no metrics file given: pass one or more training_metrics.csv files.")
    if labels is not None and len(labels) != len(files):
        raise BabyhubError(f"{len(labels)} --label for {len(files)} metrics files: give one label per file.")
    runs = [read_metrics(f) for f in files]
    figures = build_figures(runs, list(labels) if labels else _run_names(files))
    if not figures:
        wanted = ", ".join(col for _, series in FIGURES.values() for col, _ in series)
        raise BabyhubError(f"none of {[str(f) for f in files]} has loss or reward columns ({wanted}).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, fig in figures.items():
        fig.savefig(out / filename)
        plt.close(fig)
        written.append(out / filename)
    return written


def _run_names(files: list[Path]) -> list[str]:
    """Distinct short names: the run folder (parent of logs/) if the files are not told apart by name."""
    names = [f.parent.parent.name if f.parent.name == "logs" else f.stem for f in files]
    return names if len(set(names)) == len(names) else [str(f) for f in files]


def write_metrics_csv(path: str | Path, log_history: Sequence[dict]) -> Path:
    """Write the trainer's log rows as `step` then the logged keys (union over rows, in first-seen order).

    The whole file is written to a temporary file that then replaces it: readers never see half of it.
    """
    return _write_metrics(Path(path), log_history, _metrics_columns(log_history))


def _write_metrics(path: Path, log_history: Sequence[dict], columns: list[str]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in log_history:
            writer.writerow({k: row.get(k, "") for k in columns})
    tmp.replace(path)  # readers never see a half-written file
    return path


class MetricsLog:
    """Keeps a metrics CSV equal to `write_metrics_csv(path, log_history)` as the trainer's history grows.

    New rows are appended: rewriting the whole file at every log made each log row cost more than the last
    (a run that logs every step for 10,000 steps would write 50 million rows in all). The file is rewritten
    only when a row brings a column the file lacks (e.g. the end-of-training summary) or when the history is
    not a continuation of what was written (e.g. a resumed run's history).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.columns: list[str] = []
        self.written = 0
        self.last_row: dict | None = None

    def update(self, log_history: Sequence[dict]) -> Path:
        import csv

        written = self.written
        new = log_history[written:]
        continues = 0 < written <= len(log_history) and log_history[written - 1] is self.last_row
        if continues and all(k in self.columns for row in new for k in row) and self.path.is_file():
            with open(self.path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns)
                for row in new:
                    writer.writerow({k: row.get(k, "") for k in self.columns})
        else:
            self.columns = _metrics_columns(log_history)
            _write_metrics(self.path, log_history, self.columns)
        self.written = len(log_history)
        self.last_row = log_history[-1] if log_history else None
        return self.path


def _metrics_columns(log_history: Sequence[dict]) -> list[str]:
    columns = ["step"]
    for row in log_history:
        columns += [k for k in row if k not in columns]
    return columns
