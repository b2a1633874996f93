"""Metrics CSVs and plots: the original format, logs of other TRL versions, several runs on one figure."""

import subprocess
import sys

import pandas as pd
from PIL import Image

from hub_tools.evaluation.plots import MetricsLog, build_figures, read_metrics, write_metrics_csv

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
    assert set(figures) == {"loss.png", "rewards.png", "margins.png", "accuracies.png"}

    def lines(name):
        return {line.get_label(): list(line.get_ydata()) for line in figures[name].axes[0].get_lines()}

    assert lines("loss.png") == {"new": [0.69, 0.61], "old": [0.70, 0.66, 0.62]}
    assert lines("rewards.png")["old rejected"] == [0.00, -0.02, -0.05]
    assert set(lines("rewards.png")) == {"new chosen", "new rejected", "old chosen", "old rejected"}
    assert set(lines("margins.png")) == {"new"}  # the old run never logged margins


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
        assert image.size == (770, 440) and len(set(image.convert("L").getdata())) > 10
    bad = tmp_path / "bad.csv"
    bad.write_text("loss,epoch\n0.7,1\n")
    done = subprocess.run([*cmd[:4], str(bad), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "bad.csv: no `step` column" in done.stderr
