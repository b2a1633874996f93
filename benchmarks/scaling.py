"""The scaling plot: each benchmark's throughput against the model's parameters, one line per tool, log axes.

    python benchmarks/scaling.py                       # benchmarks/results/*.json -> benchmarks/results/scaling.png
    python benchmarks/scaling.py --results DIR --out FILE.png

It reads every `*.json` in the results folder (what the benchmarks wrote there: scoring_throughput.json,
train_throughput.json, distributed_throughput.json, ... whichever exist) and draws one panel per file that has
sizes, side by side, so that pairs/s and samples/s never share an axis. Each benchmark writes, beside its own
details (other top-level keys are ignored), this shape:

    {
      "benchmark": "scoring",                 # the panel's title
      "unit": "pairs/s",                      # the y axis: what the throughput counts per second
      "conditions": "shared machine ...",     # optional: the load it was measured under, shown under the panel
      "sizes": [                              # one entry per model size, in any order
        {"size": "tiny", "parameters": 1123456,
         "throughput": {"babyhub": 3350.0, "minicons (chunks of 64)": 909.0, "roofline": 4965.0}},
        {"size": "135m", "parameters": 134515008,
         "throughput": {"babyhub": 20.1, "minicons (chunks of 64)": 6.2, "roofline": 25.0}}
      ]
    }

scoring_throughput.py and distributed_throughput.py open theirs with `result_header`, which adds when it was
measured and on what machine, for the reader.

A tool's line joins its throughput at every size that has it (`null` or a missing tool: not measured at that size);
a tool whose name starts with "roofline" is drawn dashed: the ceiling at the matmul rate measured in that run. A
file without "sizes" (a benchmark along another axis, e.g. one process against two) is skipped with a note. A file
that is not JSON, or whose "sizes" does not have the shape above, is refused with an error naming the file and the
field, exit status 2, and no plot is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROOFLINE = "roofline"  # tools named so are ceilings, drawn dashed
KINDS = {str: "a string", list: "a list", dict: "an object"}


def result_header(benchmark: str, unit: str, conditions: str, machine: dict) -> dict:
    """The keys a benchmark's results open with: the panel's title and unit (read here), when it was measured, under
    what load and on what machine."""
    return {
        "benchmark": benchmark,
        "unit": unit,
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "conditions": conditions,
        "machine": machine,
    }


class ResultsError(ValueError):
    """A results file that cannot be plotted; the message names the file and the field."""


def read_panel(path: Path) -> dict | None:
    """One benchmark's sizes from `path`, checked; None if the file has no "sizes" (nothing to plot against size).

    Returns:
        {"benchmark", "unit", "conditions", "sizes": [{"size", "parameters", "throughput": {tool: float}}]}, the
        sizes sorted by parameters, tools without a figure at a size left out of that size.

    Raises:
        ResultsError: the file is not a JSON object, or a field of "sizes" is missing or of the wrong type.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not readable as JSON ({err}); rerun the benchmark that writes it") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object with 'benchmark', 'unit' and 'sizes'")
    if "sizes" not in data:
        return None

    def need(value, kind, where: str):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ResultsError(f"{path}: {where} must be {KINDS.get(kind, 'a number')}, got {value!r}")
        return value

    benchmark = need(data.get("benchmark"), str, "'benchmark'")
    unit = need(data.get("unit"), str, "'unit'")
    conditions = data.get("conditions") or ""
    need(conditions, str, "'conditions'")
    sizes = []
    for i, entry in enumerate(need(data["sizes"], list, "'sizes'")):
        where = f"sizes[{i}]"
        need(entry, dict, where)
        name = need(entry.get("size"), str, f"{where}.size")
        parameters = need(entry.get("parameters"), (int, float), f"{where}.parameters")
        if not parameters > 0:
            raise ResultsError(f"{path}: {where}.parameters must be positive, got {parameters}")
        throughput = {}
        for tool, value in need(entry.get("throughput"), dict, f"{where}.throughput").items():
            if value is None:
                continue
            need(value, (int, float), f"{where}.throughput[{tool!r}]")
            if not (value > 0 and math.isfinite(value)):
                raise ResultsError(f"{path}: {where}.throughput[{tool!r}] must be a positive number, got {value}")
            throughput[tool] = float(value)
        sizes.append({"size": name, "parameters": float(parameters), "throughput": throughput})
    if not sizes:
        raise ResultsError(f"{path}: 'sizes' is empty; rerun the benchmark or remove the file")
    sizes.sort(key=lambda s: s["parameters"])
    return {"benchmark": benchmark, "unit": unit, "conditions": conditions, "sizes": sizes, "file": path.name}


def read_results(folder: Path) -> tuple[list[dict], list[str]]:
    """Every plottable panel in `folder`'s *.json (in file-name order) and the names of the files skipped."""
    panels, skipped = [], []
    for path in sorted(folder.glob("*.json")):
        panel = read_panel(path)
        if panel is None:
            skipped.append(path.name)
        else:
            panels.append(panel)
    return panels, skipped


def plot_scaling(panels: list[dict]):
    """The figure: one log-log panel per benchmark, throughput against parameters, one line per tool.

    Returns:
        A matplotlib Figure (nothing written).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.4), squeeze=False, layout="constrained")
    for ax, panel in zip(axes[0], panels, strict=True):
        tools = list(dict.fromkeys(tool for s in panel["sizes"] for tool in s["throughput"]))
        colors = matplotlib.colormaps["tab10"].colors
        for k, tool in enumerate(tools):
            points = [(s["parameters"], s["throughput"][tool]) for s in panel["sizes"] if tool in s["throughput"]]
            xs, ys = zip(*points, strict=True)
            roof = tool.lower().startswith(ROOFLINE)
            ax.plot(
                xs,
                ys,
                linestyle="--" if roof else "-",
                marker=None if roof else "o",
                color="0.35" if roof else colors[k % len(colors)],
                label=tool,
            )
        for s in panel["sizes"]:
            ax.annotate(s["size"], (s["parameters"], max(s["throughput"].values(), default=1)), fontsize=8,
                        textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(f"throughput ({panel['unit']})")
        ax.set_title(f"{panel['benchmark']} ({panel['file']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        if panel["conditions"]:
            # wrapped to the panel's width by hand: matplotlib's wrap=True wraps at the figure's edge
            note = "\n".join(textwrap.wrap(panel["conditions"], 80))
            ax.text(0.0, -0.16, note, transform=ax.transAxes, fontsize=6.5, va="top")
    return fig


def write_scaling_plot(folder: Path, out: Path) -> tuple[Path, list[str]]:
    """Read `folder`, draw the plot and write it to `out` (staged, then renamed); returns it and the skipped files.

    Raises:
        ResultsError: a file is malformed (nothing is written), or no file has sizes to plot.
    """
    panels, skipped = read_results(folder)
    if not panels:
        raise ResultsError(f"{folder}: no results with 'sizes' to plot; run a benchmark with --json first")
    fig = plot_scaling(panels)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(staged, dpi=120)
    staged.replace(out)
    return out, skipped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of results *.json")
    parser.add_argument("--out", type=Path, default=None, help="the PNG to write (default: RESULTS/scaling.png)")
    args = parser.parse_args(argv)
    try:
        out, skipped = write_scaling_plot(args.results, args.out or args.results / "scaling.png")
    except ResultsError as err:
        print(f"scaling.py: error: {err}", file=sys.stderr)
        return 2
    for name in skipped:
        print(f"skipped {name}: no 'sizes' to plot against parameters")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
