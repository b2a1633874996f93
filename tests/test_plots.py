"""Metrics CSVs and plots: the original format, logs of other TRL versions, figures for a paper, accuracy bands."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from hub_tools.errors import BabyhubError
from hub_tools.evaluation import plots
from hub_tools.evaluation.plots import MetricsLog, build_figures, read_metrics, write_metrics_csv


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")  # build_figures and build_accuracy_figure return open figures


# Log rows as TRL 1.x logs them, then as an older TRL spelled them (train/ prefix, no margins, extra keys).
NEW = [
    {"loss": 0.69, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/margins": 0.0,
     "rewards/accuracies": 0.0, "epoch": 0.1, "step": 10},
    {"loss": 0.61, "rewards/chosen": 0.2, "rewards/rejected": -0.1, "rewards/margins": 0.3,
     "rewards/accuracies": 0.7, "epoch": 0.2, "step": 20},
    {"train_runtime": 12.0, "train_loss": 0.65, "epoch": 0.2, "step": 20},
]  # fmt: skip
OLD_CSV = (
    "step,train/loss,train/rewards/chosen,train/rewards/rejected,train/rewards/accuracies,train/logits/chosen\n"
    "5,0.70,0.01,0.00,0.5,-1.2\n"
    "15,0.66,0.05,-0.02,0.6,-1.1\n"
    "25,0.62,0.09,-0.05,0.8,-1.0\n"
)


def test_metrics_csv_is_step_then_the_logged_keys(tmp_path):
    path = write_metrics_csv(tmp_path / "logs" / "training_metrics.csv", NEW)
    frame = pd.read_csv(path)
    assert list(frame.columns[:3]) == ["step", "loss", "rewards/chosen"]
    assert "train_runtime" in frame.columns
    assert frame["loss"].tolist()[:2] == [0.69, 0.61] and pd.isna(frame["loss"].iloc[2])


def test_metrics_log_appends_rows_and_equals_a_whole_rewrite(tmp_path):
    log = MetricsLog(tmp_path / "logs" / "training_metrics.csv")
    history = []
    for row in NEW:  # the last row brings columns the file lacks: it is rewritten with them
        history.append(row)
        log.update(history)
        assert log.path.read_text() == write_metrics_csv(tmp_path / "whole.csv", history).read_text()
    size = log.path.stat().st_size
    history.append({"loss": 0.5, "epoch": 0.3, "step": 30})  # known columns: appended, nothing before it changes
    with open(log.path, "r+") as f:
        f.write("#")  # a mark a rewrite would erase
    log.update(history)
    data = log.path.read_bytes()
    assert data.startswith(b"#") and data[size:] == b"30,0.5,,,,,0.3,,\r\n"  # csv's line ending
    # A history that does not continue what was written (a resumed run's) rewrites the file.
    resumed = [dict(row) for row in NEW[:2]]
    log.update(resumed)
    assert log.path.read_text() == write_metrics_csv(tmp_path / "whole.csv", resumed).read_text()
    assert pd.read_csv(log.path)["step"].tolist() == [10, 20]


def test_logs_of_two_trl_versions_share_each_figure(tmp_path):
    new = write_metrics_csv(tmp_path / "new.csv", NEW)
    old = tmp_path / "old.csv"
    old.write_text(OLD_CSV)
    runs = [read_metrics(new), read_metrics(old)]
    assert "rewards/chosen" in runs[1].columns and "logits/chosen" in runs[1].columns
    figures = build_figures(runs, ["new", "old"])
    assert set(figures) == {"loss", "rewards", "margins", "accuracies"}

    def lines(name):
        return {line.get_label(): list(line.get_ydata()) for line in figures[name].axes[0].get_lines()}

    assert lines("loss") == {"new": [0.69, 0.61], "old": [0.70, 0.66, 0.62]}
    assert lines("rewards")["old rejected"] == [0.00, -0.02, -0.05]
    assert set(lines("rewards")) == {"new chosen", "new rejected", "old chosen", "old rejected"}
    assert set(lines("margins")) == {"new"}  # the old run never logged margins


def test_cli_draws_pngs_and_refuses_a_file_without_steps(tmp_path):
    old = tmp_path / "run-a" / "logs" / "training_metrics.csv"
    old.parent.mkdir(parents=True)
    old.write_text(OLD_CSV)
    out = tmp_path / "plots"
    cmd = [sys.executable, "-m", "hub_tools", "plots", str(old), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["accuracies.png", "loss.png", "rewards.png"]
    with Image.open(out / "loss.png") as image:
        assert image.size == (1400, 800) and len(set(image.convert("L").getdata())) > 10  # 7 x 4 in at 200 dpi
    bad = tmp_path / "bad.csv"
    bad.write_text("loss,epoch\n0.7,1\n")
    done = subprocess.run([*cmd[:4], str(bad), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "bad.csv: no `step` column" in done.stderr


# ---------------------------------------------------------------------------------------------- for a paper
def _svg_texts(path) -> list[str]:
    """Every text of an SVG, parsed as XML (matplotlib writes text as <text> elements with svg.fonttype none)."""
    root = ET.parse(path).getroot()
    return ["".join(node.itertext()).strip() for node in root.iter("{http://www.w3.org/2000/svg}text")]


def _colours(ax) -> dict[str, set[str]]:
    out = {}
    for line in ax.get_lines():
        if not line.get_label().startswith("_"):
            out.setdefault(line.get_label().split(" ")[0], set()).add(to_hex(line.get_color()))
    return out


def test_figures_in_three_formats_with_labelled_axes_and_an_epoch_axis(tmp_path):
    run = write_metrics_csv(tmp_path / "run-a" / "logs" / "training_metrics.csv", NEW)  # 100 steps per epoch
    written = plots.plot_metrics([run], tmp_path / "out", labels=["DPO real"], formats=("png", "svg", "pdf"))
    assert sorted(p.name for p in written) == sorted(
        f"{stem}.{fmt}" for stem in ("loss", "rewards", "margins", "accuracies") for fmt in ("png", "svg", "pdf")
    )
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
    texts = _svg_texts(tmp_path / "out" / "loss.svg")
    assert {plots.STEP_LABEL, "DPO loss (nats)", plots.EPOCH_LABEL, "DPO real"} <= set(texts)
    assert "reward β·log(π/π_ref) (nats)" in _svg_texts(tmp_path / "out" / "rewards.svg")
    assert (tmp_path / "out" / "loss.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(tmp_path / "out" / "loss.png") as image:
        assert image.size == (1400, 800)
    # The epoch axis maps steps to epochs with the run's steps per epoch (step 20 is epoch 0.2).
    figures = build_figures([read_metrics(run)], ["a"])
    (top,) = [child for child in figures["loss"].axes[0].child_axes]
    assert top.get_xlabel() == plots.EPOCH_LABEL
    assert figures["loss"].axes[0].get_ylabel() == "DPO loss (nats)"
    # The same data give the same SVG and PDF bytes (no date, fixed ids).
    again = plots.plot_metrics([run], tmp_path / "again", labels=["DPO real"], formats=("svg", "pdf"))
    for path in again:
        assert path.read_bytes() == (tmp_path / "out" / path.name).read_bytes()


def test_no_epoch_axis_when_runs_disagree_on_steps_per_epoch(tmp_path):
    other = [dict(row, epoch=row["epoch"] * 2) for row in NEW]  # half the steps per epoch (a larger batch)
    runs = [read_metrics(write_metrics_csv(tmp_path / f"{n}.csv", rows)) for n, rows in (("a", NEW), ("b", other))]
    assert [plots.steps_per_epoch(r) for r in runs] == [100.0, 50.0]
    assert not build_figures(runs, ["a", "b"])["loss"].axes[0].child_axes
    old = tmp_path / "old.csv"
    old.write_text(OLD_CSV)  # a run without epochs: no common epoch axis either
    assert not build_figures([runs[0], read_metrics(old)], ["a", "old"])["loss"].axes[0].child_axes
    assert build_figures([runs[0], runs[0]], ["a", "a2"])["loss"].axes[0].child_axes  # agreeing runs: one axis


def test_each_run_keeps_one_colour_in_every_figure(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text(OLD_CSV)
    csvs = [write_metrics_csv(tmp_path / f"r{i}.csv", NEW) for i in range(11)] + [old]  # 12 runs: past tab10
    names = [f"run{i}" for i in range(12)]
    figures = build_figures([read_metrics(f) for f in csvs], names)
    seen: dict[str, set[str]] = {}
    for fig in figures.values():
        for name, colours in _colours(fig.axes[0]).items():
            seen.setdefault(name, set()).update(colours)
    assert set(seen) == set(names)
    assert all(len(colours) == 1 for colours in seen.values()), seen  # chosen and rejected share it too
    assert len({next(iter(c)) for c in seen.values()}) == 12  # and no two runs share one


def test_labels_formats_and_bad_input_are_checked(tmp_path):
    run = write_metrics_csv(tmp_path / "m.csv", NEW)
    with pytest.raises(BabyhubError, match="2 labels for 1 metrics files"):
        plots.plot_metrics([run], tmp_path, labels=["a", "b"])
    with pytest.raises(BabyhubError, match=r"labels \['a'\] are given to several runs"):
        plots.plot_metrics([run, run], tmp_path, labels=["a", "a"])
    with pytest.raises(BabyhubError, match="figure format jpg is not one of png, svg, pdf"):
        plots.plot_metrics([run], tmp_path, formats=["svg", "jpg"])
    assert plots.check_formats(["PNG", ".svg", "png"]) == ["png", "svg"]


# ----------------------------------------------------------------------------------------- accuracy bands
SWEEP = [
    # model, revision, step, dataset, method, accuracy, ci95_low, ci95_high (strings, as read back from a CSV)
    *(
        {"model": "ns/dpo-real", "revision": f"checkpoint-{s}", "step": str(s), "dataset": "eval", "method": m,
         "accuracy": str(a), "ci95_low": str(a - 0.011), "ci95_high": str(a + 0.011)}
        for m, base in (("sequence_mean", 0.57), ("answer_sum", 0.60))
        for s, a in ((2000, base), (4000, base + 0.01), (5630, base + 0.015))
    ),
    *(
        {"model": "ns/dpo-synthetic", "revision": f"checkpoint-{s}", "step": s, "dataset": "eval", "method": m,
         "accuracy": a, "ci95_low": a - 0.012, "ci95_high": a + 0.012}
        for m, base in (("sequence_mean", 0.575), ("answer_sum", 0.59))
        for s, a in ((2000, base), (4000, base - 0.005))
    ),
    {"model": "ns/baby", "revision": "main", "step": "", "dataset": "eval", "method": "sequence_mean",
     "accuracy": 0.5766, "ci95_low": 0.5654, "ci95_high": 0.5877},
    {"model": "ns/baby", "revision": "main", "step": None, "dataset": "eval", "method": "answer_sum",
     "accuracy": 0.6, "ci95_low": None, "ci95_high": None},
]  # fmt: skip


def test_accuracy_against_step_draws_the_interval_as_a_band_one_colour_per_model(tmp_path):
    from matplotlib.collections import PolyCollection

    fig = plots.build_accuracy_figure(SWEEP, title="Dialogue minimal pairs", steps_per_epoch=562.5)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["eval · sequence_mean", "eval · answer_sum"]
    colour = {}
    for ax in panels:
        assert ax.get_xlabel() == plots.STEP_LABEL and ax.get_ylabel() == plots.ACCURACY_LABEL
        assert ax.child_axes and ax.child_axes[0].get_xlabel() == plots.EPOCH_LABEL
        stepped = [line for line in ax.get_lines() if line.get_marker() == "o"]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(stepped) == 2 and len(bands) == 2  # one line and one band per trained model
        for line, band in zip(stepped, bands, strict=True):
            assert to_hex(band.get_facecolor()[0]) == to_hex(line.get_color())
            ys = band.get_paths()[0].vertices[:, 1]
            accuracies = list(line.get_ydata())
            assert min(ys) == pytest.approx(min(accuracies) - 0.012, abs=0.0015)
            assert max(ys) == pytest.approx(max(accuracies) + 0.012, abs=0.0015)
            colour.setdefault(tuple(line.get_xdata()), set()).add(to_hex(line.get_color()))
    assert all(len(c) == 1 for c in colour.values()) and len(colour) == 2  # each model: one colour in both panels
    # The baseline without a step is a dashed level with its band (the first panel) or without (no interval known).
    levels = [line for line in panels[0].get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in levels] == [0.5766]
    written = plots.plot_accuracy(SWEEP, tmp_path / "sweep.png", formats=("svg", "png"))
    assert [p.name for p in written] == ["sweep.svg", "sweep.png"]
    texts = _svg_texts(written[0])
    assert {plots.STEP_LABEL, plots.ACCURACY_LABEL, "95 % interval", "ns/dpo-real", "ns/baby"} <= set(texts)


def test_accuracy_rows_are_checked_naming_the_row():
    row = dict(SWEEP[0])
    with pytest.raises(BabyhubError, match=r"evaluation row 0 \(model 'ns/dpo-real', revision 'checkpoint-2000'\)"):
        plots.build_accuracy_figure([dict(row, accuracy="high")])
    with pytest.raises(BabyhubError, match="only one of ci95_low and ci95_high"):
        plots.build_accuracy_figure([dict(row, ci95_high="")])
    with pytest.raises(BabyhubError, match="lies outside its interval"):
        plots.build_accuracy_figure([dict(row, accuracy="0.9")])
    with pytest.raises(BabyhubError, match="`dataset` is missing"):
        plots.build_accuracy_figure([dict(row, dataset="")])
    with pytest.raises(BabyhubError, match="no evaluation rows to plot"):
        plots.build_accuracy_figure([])
