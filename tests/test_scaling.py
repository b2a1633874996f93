"""benchmarks/scaling.py: the scaling plot from a results folder, and its refusal of a malformed results file."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location("benchmark_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def sizes(*rows):
    return [{"size": s, "parameters": p, "throughput": t} for s, p, t in rows]


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    write(folder, "scoring_throughput.json", {
        "benchmark": "scoring", "unit": "pairs/s", "conditions": "synthetic", "results": [{"ignored": True}],
        "sizes": sizes(
            ("135m", 134.5e6, {"babyhub": 20.0, "minicons (chunks of 64)": 6.0, "roofline": 26.0}),
            ("tiny", 1_120_000, {"babyhub": 3300.0, "minicons (chunks of 64)": 900.0, "roofline": 5000.0}),
            ("mid", 11_400_000, {"babyhub": 300.0, "minicons (chunks of 64)": None, "roofline": 400.0}),
        ),
    })  # fmt: skip
    write(folder, "train_throughput.json", {
        "benchmark": "dpo", "unit": "samples/s",
        "sizes": sizes(("tiny", 1_120_000, {"babyhub": 460.0, "trl fp32": 160.0}),
                       ("135m", 134.5e6, {"babyhub": 3.8, "trl fp32": 1.5})),
    })  # fmt: skip
    write(folder, "distributed_throughput.json", {"benchmark": "processes", "processes": [1, 2]})
    return folder


def test_plot_from_results_folder(scaling, results):
    out, skipped = scaling.write_scaling_plot(results, results / "scaling.png")
    assert out == results / "scaling.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert skipped == ["distributed_throughput.json"]
    assert not list(results.glob(".*tmp*"))  # the staged file was renamed into place

    panels, _ = scaling.read_results(results)
    assert [p["benchmark"] for p in panels] == ["scoring", "dpo"]
    scoring = panels[0]
    assert [s["size"] for s in scoring["sizes"]] == ["tiny", "mid", "135m"]  # sorted by parameters
    assert "minicons (chunks of 64)" not in scoring["sizes"][1]["throughput"]  # null: not measured there

    fig = scaling.plot_scaling(panels)
    ax_scoring, ax_dpo = fig.axes
    assert (ax_scoring.get_xscale(), ax_scoring.get_yscale()) == ("log", "log")
    lines = {line.get_label(): line for line in ax_scoring.get_lines()}
    assert set(lines) == {"babyhub", "minicons (chunks of 64)", "roofline"}
    assert list(lines["babyhub"].get_xdata()) == [1_120_000, 11_400_000, 134.5e6]
    assert list(lines["minicons (chunks of 64)"].get_ydata()) == [900.0, 6.0]
    assert lines["roofline"].get_linestyle() == "--" and lines["babyhub"].get_linestyle() == "-"
    assert "pairs/s" in ax_scoring.get_ylabel() and "samples/s" in ax_dpo.get_ylabel()
    assert {line.get_label() for line in ax_dpo.get_lines()} == {"babyhub", "trl fp32"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"benchmark": "scoring", "unit": "pairs/s", "sizes": [', "not readable as JSON"),
        (json.dumps({"benchmark": "scoring", "unit": "pairs/s", "sizes": sizes(("tiny", "1M", {"a": 1.0}))}),
         "sizes[0].parameters must be a number"),
        (json.dumps({"benchmark": "scoring", "unit": "pairs/s", "sizes": sizes(("tiny", 1e6, {"a": -1.0}))}),
         "sizes[0].throughput['a'] must be a positive number"),
        (json.dumps({"unit": "pairs/s", "sizes": sizes(("tiny", 1e6, {"a": 1.0}))}), "'benchmark' must be a string"),
    ],
)  # fmt: skip
def test_malformed_results_refused_naming_the_file(scaling, results, text, named):
    bad = write(results, "broken.json", text)
    with pytest.raises(scaling.ResultsError) as caught:
        scaling.write_scaling_plot(results, results / "scaling.png")
    assert str(bad) in str(caught.value) and named in str(caught.value)
    assert not (results / "scaling.png").exists()  # nothing written


def test_command_line_refusal_exits_2_naming_the_file(results, tmp_path):
    write(results, "broken.json", "not json")
    out = tmp_path / "plot.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(results), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("scaling.py: error: ") and "broken.json" in done.stderr
    assert not out.exists()
    (results / "broken.json").unlink()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(results), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"\x89PNG" and "skipped distributed_throughput.json" in done.stdout
