"""Figures for a paper: DPO training curves from `logs/training_metrics.csv`, and accuracy against step.

A metrics file is `step` followed by the keys the trainer logged (the original work's format). TRL
versions differ in what they log and how they spell it (`rewards/chosen`, `train/rewards/chosen`,
`train_rewards/chosen`...), so columns are normalised and a figure draws whatever a run has: several
runs share one figure.

Made to go into a paper as they are: every axis says what it measures and in which unit; training step below and,
when every run logged its epoch and they agree on the steps per epoch, epoch above; each run (or model) keeps one
colour in every figure and panel; 200 dpi PNG, SVG (text kept as text, so labels stay editable and searchable) and
PDF (TrueType fonts, as publishers ask), without a creation date, so the same data give the same files.
`build_accuracy_figure` draws accuracy against step with its 95 % interval as a band (rows with `ci95_low` and
`ci95_high`, see hub_tools/stats.py), one panel per dataset and method, one colour per model.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from hub_tools.errors import BabyhubError

logger = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")
DPI = 200
FIGURE_SIZE = (7.0, 4.0)  # inches: a two-column figure's width
STEP_LABEL = "training step (optimizer updates)"
EPOCH_LABEL = "epoch (passes over the training pairs)"
ACCURACY_LABEL = "accuracy (share of pairs right)"
# One figure per entry: file stem, title, y-axis label, and (column, line style) series. TRL's rewards are
# beta * log(pi / pi_ref) of an answer, in nats like the loss.
FIGURES = {
    "loss": ("DPO loss", "DPO loss (nats)", [("loss", "-")]),
    "rewards": (
        "Implicit rewards: chosen (solid) vs rejected (dashed)",
        "reward β·log(π/π_ref) (nats)",
        [("rewards/chosen", "-"), ("rewards/rejected", "--")],
    ),
    "margins": ("Reward margin", "reward margin, chosen − rejected (nats)", [("rewards/margins", "-")]),
    "accuracies": (
        "Reward accuracy",
        "reward accuracy (share of pairs, chosen > rejected)",
        [("rewards/accuracies", "-")],
    ),
}
_PREFIX = re.compile(r"^(train[/_])")
# Text stays text in SVG; TrueType (not Type 3) fonts in PDF; ids and metadata that do not change between runs.
_PAPER_RC = {"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "babyhub"}
_NO_DATE = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
# Steps per epoch of two runs agree when they differ by less than this share: their epoch axes are the same.
_EPOCH_TOLERANCE = 0.01


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


def run_colours(count: int) -> list:
    """`count` distinct colours, the same for the same position in every figure (tab10, tab20, then a colormap)."""
    import matplotlib

    if count <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:count])
    if count <= 20:
        return list(matplotlib.colormaps["tab20"].colors[:count])
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / (count - 1)) for i in range(count)]


def steps_per_epoch(run) -> float | None:
    """Optimizer steps per epoch of a run from its `step` and `epoch` columns, or None when it logged no epoch."""
    if "epoch" not in run.columns:
        return None
    rows = run[["step", "epoch"]].dropna()
    rows = rows[(rows["step"] > 0) & (rows["epoch"] > 0)]
    if rows.empty:
        return None
    return float((rows["step"] / rows["epoch"]).median())


def build_figures(runs: Sequence, names: Sequence[str]) -> dict:
    """{file stem: matplotlib Figure} for every figure at least one run has data for (pure: nothing written).

    Run i has colour i in every figure. The epoch axis is drawn when every run logged epochs with the same steps
    per epoch (runs of different batch sizes have no common epoch axis).
    """
    plt = _pyplot()
    colours = run_colours(len(runs))
    spe = _common_steps_per_epoch(runs, names)
    figures = {}
    for stem, (title, ylabel, series) in FIGURES.items():
        if not any(col in run.columns and run[col].notna().any() for run in runs for col, _ in series):
            continue  # no run logged this: no empty figure
        fig, ax = plt.subplots(figsize=FIGURE_SIZE)
        for colour, run, name in zip(colours, runs, names, strict=True):
            for col, style in series:
                if col in run.columns and run[col].notna().any():
                    rows = run[["step", col]].dropna()
                    label = name if len(series) == 1 else f"{name} {col.split('/')[-1]}"
                    ax.plot(rows["step"], rows[col], style, color=colour, label=label)
        ax.set_title(title)
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(ylabel)
        if spe is not None:
            _add_epoch_axis(ax, spe)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        figures[stem] = fig
    return figures


def plot_metrics(
    metrics_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Draw loss, rewards, margins and accuracies of one or more runs into `out_dir`.

    Args:
        metrics_files: the runs' `logs/training_metrics.csv` files; they share every figure.
        out_dir: folder for the figures (created).
        labels: one legend label per file, in order (default: the run folders' names).
        formats: any of "png", "svg", "pdf"; one file per figure and format (`loss.png`, `loss.svg`...).

    Returns:
        The paths written, figure by figure, in the order of `formats`.
    """
    files = [Path(f) for f in metrics_files]
    if not files:
        raise BabyhubError("no metrics file given: pass one or more training_metrics.csv files.")
    formats = check_formats(formats)
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != len(files):
            raise BabyhubError(f"{len(labels)} labels for {len(files)} metrics files: give one label per file.")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise BabyhubError(f"labels {repeated} are given to several runs: give each run its own label.")
    runs = [read_metrics(f) for f in files]
    figures = build_figures(runs, labels if labels else _run_names(files))
    if not figures:
        wanted = ", ".join(col for _, _, series in FIGURES.values() for col, _ in series)
        raise BabyhubError(f"none of {[str(f) for f in files]} has loss or reward columns ({wanted}).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [path for stem, fig in figures.items() for path in save_figure(fig, out / stem, formats)]


# ------------------------------------------------------------------------------------ accuracy against step
def build_accuracy_figure(
    rows: Sequence[Mapping], *, title: str = "", steps_per_epoch: float | None = None, chance: float | None = 0.5
):
    """Accuracy against training step, one panel per (dataset, method), one colour per model (pure).

    Each row is one evaluation: `model`, `revision`, `step` (empty or None when unknown), `dataset`, `method`,
    `accuracy` and, when known, `ci95_low` and `ci95_high`, drawn as a band around the line. A model's rows
    without a step (e.g. a baseline, or `main` without trainer state) are a dashed level with its band across the
    panel. Numbers may be strings (rows read back from the CSV).

    Args:
        rows: the evaluations, e.g. the rows of `babyhub eval ... --all-revisions`.
        title: the figure's title.
        steps_per_epoch: draws an epoch axis above when given.
        chance: a dotted line at this accuracy (None: none).

    Returns:
        A matplotlib Figure.
    """
    points = [_accuracy_point(row, i) for i, row in enumerate(rows)]
    if not points:
        raise BabyhubError("no evaluation rows to plot: evaluate at least one revision first.")
    plt = _pyplot()
    models = list(dict.fromkeys(p["model"] for p in points))
    colours = dict(zip(models, run_colours(len(models)), strict=True))
    panels = list(dict.fromkeys((p["dataset"], p["method"]) for p in points))
    columns = min(len(panels), 2)
    rows_of_panels = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(
        rows_of_panels,
        columns,
        figsize=(FIGURE_SIZE[0] if columns == 2 else FIGURE_SIZE[0] * 0.75, 3.2 * rows_of_panels + 0.8),
        sharey=True,
        squeeze=False,
    )
    for ax, (dataset, method) in zip(axes.flat, panels, strict=False):
        mine = [p for p in points if (p["dataset"], p["method"]) == (dataset, method)]
        for model in models:
            _draw_model(ax, [p for p in mine if p["model"] == model], colours[model])
        if chance is not None:
            ax.axhline(chance, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{dataset} · {method}", fontsize="medium")
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(ACCURACY_LABEL)
        ax.grid(alpha=0.3)
        if steps_per_epoch:
            _add_epoch_axis(ax, steps_per_epoch)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    _accuracy_legend(fig, models, colours, points, chance)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 if len(models) > 2 else 0.07, 1, 1))
    return fig


def plot_accuracy(
    rows: Sequence[Mapping],
    out: str | Path,
    *,
    formats: Sequence[str] = ("png",),
    title: str = "",
    steps_per_epoch: float | None = None,
) -> list[Path]:
    """Draw `build_accuracy_figure(rows)` to `out` (a path without suffix, or with one of FORMATS) in each format.

    Returns:
        The paths written, in the order of `formats`.
    """
    formats = check_formats(formats)
    fig = build_accuracy_figure(rows, title=title, steps_per_epoch=steps_per_epoch)
    out = Path(out)
    if out.suffix.lstrip(".") in FORMATS:
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out, formats)


def _accuracy_point(row: Mapping, index: int) -> dict:
    """A row's fields as numbers (`step` None when unknown), or an error naming the row and the field."""
    where = f"evaluation row {index} (model {row.get('model')!r}, revision {row.get('revision')!r})"
    for key in ("model", "dataset", "method"):
        if row.get(key) in (None, ""):
            raise BabyhubError(f"{where}: `{key}` is missing; rows need model, dataset, method and accuracy.")
    point = {key: str(row[key]) for key in ("model", "dataset", "method")}
    point["revision"] = str(row.get("revision") or "")
    point["accuracy"] = _number(row.get("accuracy"), where, "accuracy", required=True)
    point["step"] = _number(row.get("step"), where, "step")
    low, high = _number(row.get("ci95_low"), where, "ci95_low"), _number(row.get("ci95_high"), where, "ci95_high")
    if (low is None) != (high is None):
        raise BabyhubError(f"{where}: only one of ci95_low and ci95_high is given; give both or neither.")
    if low is not None and not low <= point["accuracy"] <= high:
        raise BabyhubError(f"{where}: accuracy {point['accuracy']} lies outside its interval [{low}, {high}].")
    point["low"], point["high"] = low, high
    return point


def _number(value, where: str, key: str, *, required: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BabyhubError(f"{where}: `{key}` is missing; every row needs a number there.")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BabyhubError(f"{where}: `{key}` is {value!r}, not a number.") from None
    if math.isnan(number):
        if required:
            raise BabyhubError(f"{where}: `{key}` is not a number (NaN).")
        return None
    return number


def _draw_model(ax, points: list[dict], colour) -> None:
    """One model in one panel: a line through its steps with the interval band, and levels for stepless rows."""
    stepped = sorted((p for p in points if p["step"] is not None), key=lambda p: p["step"])
    if stepped:
        steps = [p["step"] for p in stepped]
        ax.plot(steps, [p["accuracy"] for p in stepped], marker="o", markersize=3.5, color=colour)
        banded = [p for p in stepped if p["low"] is not None]
        if banded:
            ax.fill_between(
                [p["step"] for p in banded],
                [p["low"] for p in banded],
                [p["high"] for p in banded],
                color=colour,
                alpha=0.2,
                linewidth=0,
            )
    for p in points:
        if p["step"] is None:
            ax.axhline(p["accuracy"], color=colour, linestyle="--", linewidth=1.2)
            if p["low"] is not None:
                ax.axhspan(p["low"], p["high"], color=colour, alpha=0.12, linewidth=0)


def _accuracy_legend(fig, models: list[str], colours: dict, points: list[dict], chance: float | None) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=colours[m], marker="o", markersize=3.5, label=m) for m in models]
    if any(p["low"] is not None for p in points):
        handles.append(Patch(color="grey", alpha=0.25, label="95 % interval"))
    if any(p["step"] is None for p in points):
        handles.append(Line2D([], [], color="grey", linestyle="--", label="revision without a step"))
    if chance is not None:
        handles.append(Line2D([], [], color="grey", linestyle=":", label=f"chance ({chance:g})"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize="small", frameon=False)


# ------------------------------------------------------------------------------------------------ shared
def check_formats(formats: Sequence[str]) -> list[str]:
    """The requested figure formats, lower-cased and without repeats; an unknown one is an error naming it."""
    if isinstance(formats, str):
        formats = [formats]
    chosen = list(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen:
        raise BabyhubError(f"no figure format given: choose one or more of {', '.join(FORMATS)}.")
    if unknown:
        raise BabyhubError(f"figure format {', '.join(unknown)} is not one of {', '.join(FORMATS)}: choose those.")
    return chosen


def save_figure(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write `fig` as stem.<format> for each format (200 dpi for PNG; text as text), close it, return the paths."""
    plt = _pyplot()
    written = []
    try:
        with plt.rc_context(_PAPER_RC):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}.{fmt}")
                tmp = path.with_name(f".{path.name}.tmp")
                fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_NO_DATE[fmt])
                tmp.replace(path)  # a reader never sees half a figure
                written.append(path)
    finally:
        plt.close(fig)
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _common_steps_per_epoch(runs: Sequence, names: Sequence[str]) -> float | None:
    """The runs' common steps per epoch, or None when a run logged no epoch or the runs disagree (logged)."""
    found = [steps_per_epoch(run) for run in runs]
    if not found or any(spe is None for spe in found):
        return None
    if max(found) > min(found) * (1 + _EPOCH_TOLERANCE):
        logger.info(
            "no epoch axis: the runs have different steps per epoch (%s)",
            ", ".join(f"{name}: {spe:.1f}" for name, spe in zip(names, found, strict=True)),
        )
        return None
    return sum(found) / len(found)


def _add_epoch_axis(ax, spe: float) -> None:
    top = ax.secondary_xaxis("top", functions=(lambda step: step / spe, lambda epoch: epoch * spe))
    top.set_xlabel(EPOCH_LABEL)


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
