"""Flags that reach library features: `plots --label A B --format ...`, `hub sync --check`, `hub serve
--run-spaces` and its start-up hints."""

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

from hub_tools.cli import main
from hub_tools.cli import train as train_cli
from hub_tools.evaluation import plots
from hub_tools.evaluation.plots import write_metrics_csv
from tests.test_local_hub_cli import _free_port, _wait_up
from tests.test_plots import NEW
from tests.test_sync_check import ALICE, SRC, _commits, hubs  # noqa: F401  (a fixture)


def _svg_texts(path) -> set[str]:
    root = ET.parse(path).getroot()
    return {"".join(node.itertext()).strip() for node in root.iter("{http://www.w3.org/2000/svg}text")}


# ------------------------------------------------------------------------------------------------- plots
def test_plot_formats_of_the_cli_are_the_plotters():
    assert train_cli._PLOT_FORMATS == plots.FORMATS


def test_plots_take_labels_and_formats_as_lists(tmp_path, capsys):
    runs = [write_metrics_csv(tmp_path / name / "logs" / "training_metrics.csv", NEW) for name in ("run-a", "run-b")]
    out = tmp_path / "figures"
    argv = ["plots", *map(str, runs), "--out", str(out), "--label", "DPO real", "DPO synthetic"]
    assert main([*argv, "--format", "png", "svg", "pdf"]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
        f"{stem}.{fmt}" for stem in ("loss", "rewards", "margins", "accuracies") for fmt in ("png", "svg", "pdf")
    )
    assert {"DPO real", "DPO synthetic", plots.STEP_LABEL, plots.EPOCH_LABEL} <= _svg_texts(out / "loss.svg")
    # The repeated-flag spelling still works and gives the same figure.
    again = tmp_path / "again"
    repeated = ["plots", *map(str, runs), "--out", str(again), "--label", "DPO real", "--label", "DPO synthetic"]
    assert main([*repeated, "--format", "svg"]) == 0
    assert (again / "loss.svg").read_bytes() == (out / "loss.svg").read_bytes()
    assert sorted(p.name for p in again.iterdir()) == ["accuracies.svg", "loss.svg", "margins.svg", "rewards.svg"]


def test_plots_refuse_a_wrong_label_count_and_an_unknown_format(tmp_path, capsys):
    run = write_metrics_csv(tmp_path / "run" / "logs" / "training_metrics.csv", NEW)
    assert main(["plots", str(run), "--out", str(tmp_path / "o"), "--label", "a", "b"]) == 2
    assert "2 labels for 1 metrics files: give one label per file." in capsys.readouterr().err
    assert main(["plots", str(run), "--out", str(tmp_path / "o"), "--format", "jpg"]) == 2
    assert "--format invalid choice: 'jpg'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------- hub sync
def test_sync_check_prints_each_refusal_exits_1_and_writes_nothing(hubs, tmp_path, capsys):  # noqa: F811
    source, dest, dst_api = hubs
    src_tokens, dest_tokens = tmp_path / "src", tmp_path / "dest"
    src_tokens.write_text(f"{SRC}\n")
    dest_tokens.write_text(f"{ALICE} user=alice orgs=lab\n")  # the token file's format: the token comes first
    before = {m.id: _commits(dst_api, m.id) for m in dst_api.list_models()}
    base = ["hub", "sync", "--check", "--from", source.url, "--to", dest.url, "--from-token-file", str(src_tokens),
            "--to-token-file", str(dest_tokens)]  # fmt: skip
    assert main([*base, "--repo", "other/thing"]) == 1
    out = capsys.readouterr().out
    assert "refused: models/other/thing: the destination token (alice, write token) cannot write" in out
    assert "check failed: 1 problem(s) in 1 repo(s); nothing was written" in out
    assert main([*base, "--repo", "lab/good"]) == 0
    assert f"check passed: {dest.url} would accept the mirror of 1 repo(s); nothing was written" in (
        capsys.readouterr().out
    )
    assert {m.id: _commits(dst_api, m.id) for m in dst_api.list_models()} == before


def test_sync_check_names_a_missing_token_file(hubs, tmp_path, capsys):  # noqa: F811
    source, dest, _ = hubs
    argv = ["hub", "sync", "--check", "--from", source.url, "--to", dest.url, "--to-token-file", str(tmp_path / "no")]
    assert main(argv) == 2
    assert f"--to-token-file {tmp_path / 'no'}: file not found" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- hub serve
def test_serve_runs_spaces_and_prints_the_token_and_xet_hints(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    root = tmp_path / "hub"
    cmd = [sys.executable, "-m", "hub_tools", "hub", "serve", "--root", str(root), "--port", str(port), "--run-spaces"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_up(url, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    token = (root / "tokens").read_text().split()[0]
    assert token not in out + err
    assert f"babyhub local hub: {url}  root={root}  (running Spaces)" in err
    assert f"HF_TOKEN=$(head -n1 {root / 'tokens'} | cut -d' ' -f1)" in err
    from hub_tools.local_hub.xet import startup_hint

    assert startup_hint(url) in err  # how a client that uses Xet fails, and the fix
