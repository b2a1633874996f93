"""What `babyhub eval` does on N processes, as a script torchrun can start; and how the tests launch either.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py eval \\
        --model NS/NAME --all-revisions --data a.csv --method sequence_mean --json-out rows.json

The CLI handlers call the same library function (`evaluate_revisions`); the tests launch the CLI itself
(`launch(..., cli=True)`: `torchrun -m hub_tools ...`; synthesis always so, its report is printed) and this script
where they need what the CLI does not print (every pair's margin, both sweeps in one launch). It keeps the CLI's
contract: the main process alone writes (`--json-out`), the others exit 0 without a word, a `BabyhubError` on any
process prints `error: <message>` on every process and exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def torchrun_command(nproc: int, log_dir: Path, *args: str, cli: bool = False) -> list[str]:
    """torchrun on free ports (`--standalone`), each process's output in log_dir/<run>/attempt_0/<rank>/.

    `cli`: run `-m hub_tools ARGS` (the `babyhub` command itself) instead of this script.
    """
    target = ["-m", "hub_tools"] if cli else [__file__]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "--log-dir",
        str(log_dir),
        "--redirects",
        "3",
        *target,
        *args,
    ]


def worker_env() -> dict[str, str]:
    """This tree first on the path (the workers import the code under test), one thread per process."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def launch(
    nproc: int, log_dir: Path, *args: str, cli: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the worker (or with `cli`, `python -m hub_tools ARGS`) on `nproc` processes and wait for it."""
    return subprocess.run(
        torchrun_command(nproc, log_dir, *args, cli=cli),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rank_output(log_dir: Path) -> dict[int, dict[str, str]]:
    """{rank: {"stdout": ..., "stderr": ...}} of the last launch logged in log_dir."""
    out: dict[int, dict[str, str]] = {}
    for path in Path(log_dir).glob("*/attempt_*/*/std*.log"):
        out.setdefault(int(path.parent.name), {})[path.stem] = path.read_text()
    return out


def run_eval(args) -> int:
    """The minimal-pair sweep (`--data`, `--method`), then the BLiMP sweep (`--suite`, its default method)."""
    from hub_tools import evaluation
    from hub_tools.branches import Revision

    model = evaluation.EvalModel(args.model, batch_size=args.batch_size, workers=1)
    if args.revisions:
        revisions = [Revision.of_branch(name) for name in args.revisions]
    else:
        revisions = evaluation.select_revisions(model, every=args.all_revisions)
    sweeps = {}
    if args.data:
        sweeps["minpairs"] = ([evaluation.read_minpairs_data(d) for d in args.data], args.method)
    if args.suite:
        sweeps["blimp"] = ([evaluation.read_blimp_suite(args.suite, lower_case=True)], None)
    out, start = {}, time.perf_counter()
    for target, (datasets, methods) in sweeps.items():
        rows = evaluation.evaluate_revisions(model, revisions, datasets, methods, progress=False)
        if rows is not None:
            out[target] = [{**row.record(), "margins": row.result.margins} for row in rows]
    if not out:
        return 0  # not the main process
    out["seconds"] = time.perf_counter() - start
    with open(args.json_out, "w") as f:
        json.dump(out, f)
    return 0


def main() -> int:
    from hub_tools.errors import BabyhubError

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    ev.add_argument("--model", required=True)
    ev.add_argument("--all-revisions", action="store_true")
    ev.add_argument("--revisions", nargs="+")
    ev.add_argument("--data", nargs="*", default=[])
    ev.add_argument("--suite")
    ev.add_argument("--method", nargs="+")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--json-out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return run_eval(args)
    except BabyhubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from hub_tools.distributed import exit_process

    exit_process(main())
