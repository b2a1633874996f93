"""One process against two on this machine: the evaluation sweep and a synthesis, rows compared, overhead measured.

    flock /tmp/babyhub-bench.lock python benchmarks/distributed_throughput.py \\
        --json benchmarks/results/distributed_throughput.json --conditions "other agents working"
    python benchmarks/distributed_throughput.py --pairs 400 --rounds 1 --synthesis-rows 32   # a quick look
    python benchmarks/distributed_throughput.py --model path/to/baby --no-synthesis

A correctness-and-overhead figure, not a scaling one (this machine has 2 cores). Every contender runs under
torchrun (gloo, `--standalone`) and calls what the CLI calls: the sweep is `evaluate_revisions` (under the
launcher it splits its units; one process: the plain sweep) on a model repo of a local hub started here, with
`--revisions` branches of the same weights (every revision is in the cache first, so each run loads from disk);
the synthesis is `synthesize_preferences` with the model as its own teacher, on the real training prompts.

- **1 x 1**: one process, one thread (OMP_NUM_THREADS=1, one scoring worker): the reference rows;
- **2 x 1**: two processes, one thread each: each scores a contiguous, pair-weighted share of the
  revision x dataset x method units (synthesis: every other batch) and the main process gathers the rows;
- **1 x 2** (evaluation only): one process with two threads and two scoring workers: what one process does with
  both cores.

For each it measures the wall seconds of the whole launch (torchrun, interpreters, imports, rendezvous, set-up,
the work, exit) and, inside the workers: the rendezvous (joining the process group), the work call (the sweep; the
synthesis from teacher load to the written split), the seconds each process spent in its own units (scoring, or
generating), the gathering of the rows to the main process (evaluation) or the assembly of the split on the main
process (synthesis), and what is left: the lockstep waits at the steps (the imbalance of the shares and the
per-step checks). Speed-ups are 1 x 1's seconds over the contender's, for the work call and for the whole launch.
The rows must equal the 1 x 1 rows (every field, the 95 % intervals and every pair's margin, in order; the
synthetic split row for row): if any differ, the script says which and writes nothing. The contenders alternate
for `--rounds` rounds so that load from other processes hits all alike; the figures are medians.

Load from other processes skews every number here: record it with `--conditions` and quote it with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The keys every benchmark's results open with, shared with the scaling plot (this folder is on sys.path when run).
from scaling import result_header

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "minpairs" / "len_pairs_no_overlap_1.csv"
EVAL_START = 18000
METHODS = ("sequence_mean", "answer_sum")
MODEL_REPO = "bench/distributed-sweep"
# (name, processes, threads per process)
EVAL_CONTENDERS = (("1 x 1", 1, 1), ("2 x 1", 2, 1), ("1 x 2", 1, 2))
SYNTHESIS_CONTENDERS = (("1 x 1", 1, 1), ("2 x 1", 2, 1))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: bootstrap a tiny baby under --work-dir)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/babyhub-bench"), help="for the bootstrapped baby")
    parser.add_argument("--revisions", type=int, default=4, help="branches of the swept repo (default: 4)")
    parser.add_argument("--datasets", type=int, default=2, help="evaluation datasets (default: 2)")
    parser.add_argument("--pairs", type=int, default=800, help="evaluation pairs, split over the datasets")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    parser.add_argument("--synthesis-rows", type=int, default=1024, help="rows synthesized per contender")
    parser.add_argument("--synthesis-batch", type=int, default=16, help="synthesis batch size")
    parser.add_argument("--no-synthesis", action="store_true", help="skip the synthesis part")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results to PATH and PATH.md")
    parser.add_argument("--conditions", default="", help="the load condition to record with the figures")
    # What each launched process runs (internal).
    parser.add_argument("--worker", choices=("eval", "synthesize"), help=argparse.SUPPRESS)
    parser.add_argument("--data", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ workers
class Stopwatch:
    """Seconds spent inside the functions it wraps (a process's own units, its gathering)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def join() -> tuple:
    """The launcher's processes, and the seconds joining the process group took (the rendezvous)."""
    from hub_tools import distributed

    start = time.perf_counter()
    processes = distributed.current_processes()
    return processes, time.perf_counter() - start


def write_timings(out: Path, processes, timings: dict) -> None:
    """Each process's timings in a file of its own beside `out` (the main process's also holds the rows)."""
    path = out.with_name(f"{out.name}.rank{processes.rank}.json")
    path.write_text(json.dumps({"rank": processes.rank, **timings}))


def eval_worker(args) -> None:
    from hub_tools import distributed, evaluation
    from hub_tools.evaluation import distributed as shares
    from hub_tools.evaluation import sweep

    processes, rendezvous = join()
    own, gather = Stopwatch(), Stopwatch()
    # one call per unit under the launcher (evaluate_shares), the whole sweep on one process (evaluate_revisions)
    sweep._evaluate_here = shares._evaluate_here = own.wrap(sweep._evaluate_here)
    distributed.gather_to_main = gather.wrap(distributed.gather_to_main)
    model = evaluation.EvalModel(MODEL_REPO, workers=args.threads)
    revisions = distributed.run_on_each(lambda: evaluation.select_revisions(model, every=True), processes)
    datasets = [evaluation.read_minpairs_data(path) for path in args.data]
    start = time.perf_counter()
    rows = evaluation.evaluate_revisions(model, revisions, datasets, METHODS, progress=False)
    seconds = time.perf_counter() - start
    # the model loads are inside the units (each process loads the revisions of its share)
    timings = {"rendezvous": rendezvous, "work": seconds, "setup": 0.0, "own_units": own.seconds}
    timings["gather"] = gather.seconds
    if rows is not None:
        timings["rows"] = [{**row.record(), "margins": row.result.margins} for row in rows]
    write_timings(args.out, processes, timings)


def synthesis_worker(args) -> None:
    from hub_tools.data import synthesize

    processes, rendezvous = join()
    own, assemble, teacher_load = Stopwatch(), Stopwatch(), Stopwatch()
    load_teacher = teacher_load.wrap(synthesize.load_teacher)

    def timed_teacher(*a, **k):
        teacher = load_teacher(*a, **k)
        teacher.generate = own.wrap(teacher.generate)  # this process's batches
        return teacher

    synthesize.load_teacher = timed_teacher
    synthesize._write_split = assemble.wrap(synthesize._write_split)  # the main process: every batch, in row order
    start = time.perf_counter()
    synthesize.synthesize_preferences(
        args.train,
        args.model,
        args.out,
        limit=args.synthesis_rows,
        batch_size=args.synthesis_batch,
        seed=1,
        filter_rows=False,
        restart=True,
        progress=False,
    )
    seconds = time.perf_counter() - start
    timings = {
        "rendezvous": rendezvous,
        "work": seconds,
        "setup": teacher_load.seconds,
        "own_units": own.seconds,
        "gather": assemble.seconds,
    }
    write_timings(args.out, processes, timings)


# ------------------------------------------------------------------------------------------------ set-up
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_split(work_dir: Path) -> Path:
    """The real training split (cached in work_dir): the synthesis prompts, and the bootstrapped baby's text."""
    from hub_tools.data.preferences import build_preference_datasets

    train = work_dir / "data" / "child-dpo-preferences"
    if not train.is_dir():
        build_preference_datasets(DATA, work_dir / "data")
    return train


def bootstrap_model(work_dir: Path) -> Path:
    """A ≈1 M-parameter baby trained briefly on the real training split (cached in work_dir)."""
    from hub_tools.training.baby import bootstrap_baby

    out = work_dir / "baby"
    if not (out / "config.json").is_file():
        bootstrap_baby(train_split(work_dir), out, size="tiny", max_steps=300, progress=True)
    return out


def write_datasets(folder: Path, pairs: int, count: int) -> list[Path]:
    """`count` CSVs in the published format splitting `pairs` real evaluation rows (from row 18,000)."""
    with DATA.open(newline="") as src:
        reader = csv.reader(src)
        header, rows = next(reader), [row for i, row in enumerate(reader) if EVAL_START <= i < EVAL_START + pairs]
    paths, size = [], -(-len(rows) // count)
    for k in range(count):
        path = folder / f"eval{k}.csv"
        with path.open("w", newline="") as dst:
            writer = csv.writer(dst)
            writer.writerow(header)
            writer.writerows(rows[k * size : (k + 1) * size])
        paths.append(path)
    return paths


def launch(processes: int, threads: int, out: Path, *args: str) -> dict:
    """Run this script's worker on `processes` processes of `threads` threads each.

    Returns the launch's wall seconds and each process's timings (rank order).
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    for stale in out.parent.glob(f"{out.name}.rank*.json"):
        stale.unlink()
    start = time.perf_counter()
    result = subprocess.run(
        [*command, __file__, *args, "--out", str(out), "--threads", str(threads)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"launch of {processes} x {threads} failed:\n{result.stderr[-3000:]}")
    ranks = [json.loads(out.with_name(f"{out.name}.rank{r}.json").read_text()) for r in range(processes)]
    return {"wall": wall, "ranks": ranks}


# ------------------------------------------------------------------------------------------------ the runs
def summarize(runs: list[dict]) -> dict:
    """Medians over the rounds of one contender: wall, rendezvous, work, and the parts of the work per process."""
    median = statistics.median
    main = [run["ranks"][0] for run in runs]
    ranks = range(len(runs[0]["ranks"]))

    def per_process(part) -> list[float]:
        return [median(part(run["ranks"][r]) for run in runs) for r in ranks]

    return {
        "wall_seconds": median(run["wall"] for run in runs),
        "work_seconds": median(m["work"] for m in main),
        "outside_work_seconds": median(run["wall"] - run["ranks"][0]["work"] for run in runs),
        "rendezvous_seconds": median(m["rendezvous"] for m in main),
        "gather_seconds": median(m["gather"] for m in main),
        # per process (rank order): loading the teacher (synthesis), its own units, and the rest of the work call:
        # waiting at the lockstep steps (the shares' imbalance, the per-step checks) and reading the inputs
        "setup_seconds": per_process(lambda x: x["setup"]),
        "own_units_seconds": per_process(lambda x: x["own_units"]),
        "wait_seconds": per_process(lambda x: x["work"] - x["setup"] - x["own_units"] - x["gather"]),
    }


def speedups(contenders: dict) -> None:
    base = contenders["1 x 1"]
    for c in contenders.values():
        c["speedup_work"] = base["work_seconds"] / c["work_seconds"]
        c["speedup_wall"] = base["wall_seconds"] / c["wall_seconds"]
        # what launching more processes costs outside the work (interpreters and imports side by side, rendezvous)
        c["extra_outside_work_seconds"] = c["outside_work_seconds"] - base["outside_work_seconds"]


def bench_eval(args, csvs: list[Path], work: Path) -> dict:
    pairs = sum(len(f.read_text().splitlines()) - 1 for f in csvs) * len(METHODS) * args.revisions
    runs = {name: [] for name, _, _ in EVAL_CONTENDERS}
    rows = {name: [] for name, _, _ in EVAL_CONTENDERS}
    for round_ in range(args.rounds):
        order = EVAL_CONTENDERS if round_ % 2 == 0 else EVAL_CONTENDERS[::-1]
        for name, processes, threads in order:
            print(f"[evaluation] round {round_ + 1}: {name} ...", flush=True)
            out = work / f"eval-{processes}x{threads}"
            run = launch(processes, threads, out, "--worker", "eval", "--data", *map(str, csvs))
            rows[name].append(run["ranks"][0].pop("rows"))
            runs[name].append(run)
    reference = rows["1 x 1"][0]
    contenders = {}
    for name, results in runs.items():
        contenders[name] = summarize(results)
        contenders[name]["pairs_per_second"] = pairs / contenders[name]["work_seconds"]
        contenders[name]["rows_identical"] = all(r == reference for r in rows[name])
    speedups(contenders)
    return {
        "pairs_scored": pairs,
        "units": args.revisions * len(csvs) * len(METHODS),
        "rows": len(reference),
        "contenders": contenders,
    }


def bench_synthesis(args, train: Path, work: Path) -> dict:
    import datasets

    runs = {name: [] for name, _, _ in SYNTHESIS_CONTENDERS}
    rows = {name: [] for name, _, _ in SYNTHESIS_CONTENDERS}
    extra = ["--synthesis-rows", str(args.synthesis_rows), "--synthesis-batch", str(args.synthesis_batch)]
    for round_ in range(args.rounds):
        order = SYNTHESIS_CONTENDERS if round_ % 2 == 0 else SYNTHESIS_CONTENDERS[::-1]
        for name, processes, threads in order:
            print(f"[synthesis] round {round_ + 1}: {name} ...", flush=True)
            out = work / f"synthetic-{processes}x{threads}"
            run = launch(processes, threads, out, "--worker", "synthesize", "--train", str(train),
                         "--model", args.model, *extra)  # fmt: skip
            rows[name].append(datasets.load_dataset(str(out))["train"].to_list())
            runs[name].append(run)
    reference = rows["1 x 1"][0]
    contenders = {}
    for name, results in runs.items():
        contenders[name] = summarize(results)
        contenders[name]["rows_per_second"] = args.synthesis_rows / contenders[name]["work_seconds"]
        contenders[name]["rows_identical"] = all(r == reference for r in rows[name])
    speedups(contenders)
    return {
        "rows": args.synthesis_rows,
        "batches": -(-args.synthesis_rows // args.synthesis_batch),
        "contenders": contenders,
    }


# ------------------------------------------------------------------------------------------------ report
def machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__}


def table(title: str, rate: str, unit: str, part: dict) -> list[str]:
    lines = [
        f"### {title}",
        "",
        f"| processes x threads | {unit} (work) | speed-up: work | wall s | speed-up: wall | outside the work s "
        "(vs 1 x 1) | "
        "rendezvous s | teacher load s | own units s | waits s | gather/assemble s | rows |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|",
    ]
    for name, c in part["contenders"].items():
        setup = " / ".join(f"{x:.1f}" for x in c["setup_seconds"])
        own = " / ".join(f"{x:.1f}" for x in c["own_units_seconds"])
        waits = " / ".join(f"{x:.2f}" for x in c["wait_seconds"])
        same = "identical" if c["rows_identical"] else "DIFFERENT"
        lines.append(
            f"| {name} | {c[rate]:.1f} | {c['speedup_work']:.2f}x | {c['wall_seconds']:.1f} | "
            f"{c['speedup_wall']:.2f}x | {c['outside_work_seconds']:.1f} ({c['extra_outside_work_seconds']:+.1f}) | "
            f"{c['rendezvous_seconds']:.2f} | "
            f"{setup} | {own} | {waits} | {c['gather_seconds']:.3f} | {same} |"
        )
    return lines + [""]


def markdown(out: dict) -> str:
    e = out["evaluation"]
    lines = [
        f"# One process against two ({out['measured']})",
        "",
        f"`python benchmarks/distributed_throughput.py` on {out['machine']['cores']} cores, torch "
        f"{out['machine']['torch']}, torchrun gloo. Conditions: {out['conditions'] or 'not recorded'}; load average "
        f"(1 min) {out['load_average']['before'][0]:.1f} before, {out['load_average']['after'][0]:.1f} after. "
        f"Medians of {out['rounds']} alternating rounds. *Work*: the sweep call (evaluation) or the synthesis call "
        "from teacher load to the written split, on the main process; *wall*: the whole torchrun launch; *outside "
        "the work*: wall minus work (torchrun, interpreters, imports, rendezvous, set-up, exit); *waits*: work minus "
        "teacher load minus own units minus gathering (the lockstep steps: imbalance and per-step checks; reading the "
        "inputs). Per-process figures are given rank 0 / rank 1.",
        "",
        *table(
            f"Evaluation sweep: {e['units']} units ({e['rows']} rows), {e['pairs_scored']:,} pairs scored, "
            f"the tiny baby",
            "pairs_per_second",
            "pairs/s",
            e,
        ),
    ]
    if "synthesis" in out:
        s = out["synthesis"]
        lines += table(
            f"Synthesis: {s['rows']} rows in {s['batches']} batches, the tiny baby as its own teacher",
            "rows_per_second",
            "rows/s",
            s,
        )
    lines.append(
        "Rows: every contender's rows equal one process's (evaluation: every field, the 95 % interval and every "
        "pair's margin, in order; synthesis: the split row for row), asserted by the script."
    )
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed into place (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(text)
    staged.replace(path)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        (eval_worker if args.worker == "eval" else synthesis_worker)(args)
        return None
    load_before = os.getloadavg()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="distributed-", dir=args.work_dir))
    # 1. A local hub for the swept repo; the clients read its address when they are imported (after this).
    token = "hf_bench_" + secrets.token_hex(16)
    port = free_port()
    os.environ.update(
        {
            "HF_ENDPOINT": f"http://127.0.0.1:{port}",
            "HF_TOKEN": token,
            "HF_HOME": str(work / "hf_home"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    from hub_tools.local_hub.server import start_background

    hub = start_background(work / "hub", port=port, tokens=[token])
    try:
        # 2. The model on `--revisions` branches, every revision in the cache; the evaluation data.
        from huggingface_hub import snapshot_download

        from hub_tools.hub.publish import push_folder

        args.model = args.model or str(bootstrap_model(args.work_dir))
        push_folder(args.model, MODEL_REPO)
        for k in range(1, args.revisions):
            push_folder(args.model, MODEL_REPO, revision=f"checkpoint-{100 * k}")
        for revision in ["main"] + [f"checkpoint-{100 * k}" for k in range(1, args.revisions)]:
            snapshot_download(MODEL_REPO, revision=revision)
        csvs = write_datasets(work, args.pairs, args.datasets)
        # 3. The sweep, then the synthesis, each contender in turn.
        out = {
            **result_header("distributed", "pairs/s (evaluation), rows/s (synthesis)", args.conditions, machine()),
            "rounds": args.rounds,
            "evaluation": bench_eval(args, csvs, work),
        }
        if not args.no_synthesis:
            out["synthesis"] = bench_synthesis(args, train_split(args.work_dir), work)
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    out["load_average"] = {"before": load_before, "after": os.getloadavg()}
    text = markdown(out)
    print(text)
    different = [
        f"{part} {name}"
        for part in ("evaluation", "synthesis")
        for name, c in out.get(part, {}).get("contenders", {}).items()
        if not c["rows_identical"]
    ]
    if different:
        raise SystemExit(f"rows differ from one process's for {', '.join(different)}: nothing written")
    if args.json:
        write_atomically(args.json, json.dumps(out, indent=1) + "\n")
        write_atomically(args.json.with_suffix(".md"), text)
        print(f"wrote {args.json} and {args.json.with_suffix('.md')}")
    return out


if __name__ == "__main__":
    main()
