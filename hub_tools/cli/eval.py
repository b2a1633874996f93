"""`babyhub eval minpairs|blimp|compare`: accuracy of a model, a revision or every checkpoint, each with its 95 %
interval; and two models compared on the same pairs (paired difference, its interval, McNemar's p-value).

    babyhub eval minpairs --model me/baby-dpo --data me/child-dpo-preferences-eval
    babyhub eval minpairs --model me/baby-dpo --all-revisions --data me/child-dpo-preferences-eval \\
        --method sequence_mean answer_sum --output-dir results/
    babyhub eval blimp --model me/baby-dpo --revision checkpoint-2000 --suite ../shared/data/blimp --lower-case
    babyhub eval minpairs --model ./out/baby --data ../shared/data/minpairs/len_pairs_no_overlap_1.csv --json
    # the original's BLiMP numbers: lower-cased, minicons 0.3.8's beginning-of-word correction
    babyhub eval blimp --model me/baby-dpo --suite ../shared/data/blimp --lower-case --method sequence_sum_bow_legacy
    # a DPO model against its baseline on the same pairs
    babyhub eval compare --model me/baby-dpo --model me/baby --data me/child-dpo-preferences-eval
    # every checkpoint on N processes (CPUs: torchrun and gloo; GPUs: accelerate launch ... --device cuda)
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m hub_tools eval minpairs --model me/baby-dpo --all-revisions \\
        --data me/child-dpo-preferences-eval

Under a launcher, `eval minpairs|blimp` split the revision × dataset × method units over the processes
(`hub_tools.evaluation.distributed`); the main process alone prints, writes the CSV and plots and pushes the cards,
with the rows of a one-process run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub_tools import distributed, errors
from hub_tools.cli import _options


def _evaluation():
    # Imported when a command runs (or asks for the method choices), not with the parser: hub_tools.evaluation
    # imports the scorer (torch), which takes seconds that `babyhub --help` should not spend. For the same
    # reason the defaults of --method and --batch-size are None here and the library's own (`EvalModel`,
    # `evaluate_revisions`).
    from hub_tools import evaluation

    return evaluation


def register(subparsers) -> None:
    """Add `eval minpairs`, `eval blimp` and `eval compare` to `babyhub`."""
    commands = _options.add_command_group(
        subparsers, "eval", help="Evaluate a model on dialogue minimal pairs or BLiMP", metavar="TARGET"
    )

    minpairs = _options.add_command(commands, "minpairs", handle_eval_minpairs)
    _add_sweep_options(minpairs)
    minpairs.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="D",
        help="minimal pairs: dataset folder(s), Hub dataset id(s) or CSV(s) in the published format",
    )
    minpairs.add_argument("--split", default="train", help="dataset split to evaluate (default: train)")
    _add_methods(minpairs, "MINPAIR_METHODS", default="sequence_mean, the DPO write-up's")

    blimp = _options.add_command(commands, "blimp", handle_eval_blimp)
    _add_sweep_options(blimp)
    blimp.add_argument("--suite", required=True, metavar="DIR", help="folder of BLiMP <paradigm>.txt files")
    blimp.add_argument("--lower-case", action="store_true", help="lower-case the sentences (CHILDES text is)")
    _add_methods(blimp, "BLIMP_METHODS", default="sequence_sum_bow; the original's: sequence_sum_bow_legacy")

    compare = _options.add_command(commands, "compare", handle_eval_compare)
    compare.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="ID[@REV]",
        help="a model: Hub id (optionally @revision) or local folder; give --model twice, A then B",
    )
    compare.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="D",
        help="minimal pairs: dataset folder(s), Hub dataset id(s) or CSV(s) in the published format",
    )
    compare.add_argument("--split", default="train", help="dataset split to evaluate (default: train)")
    compare.add_argument("--suite", default=None, metavar="DIR", help="also BLiMP: folder of <paradigm>.txt files")
    compare.add_argument("--lower-case", action="store_true", help="lower-case the BLiMP sentences")
    _add_methods(compare, "MINPAIR_METHODS", default="each dataset's: sequence_mean, BLiMP sequence_sum_bow")
    _options.add_batch_size(
        compare, help="texts per forward pass (default: the fastest measured on a CPU, see benchmarks/README.md)"
    )
    _options.add_device(compare)
    _options.add_workers(compare)
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _add_methods(parser, methods: str, *, default: str) -> None:
    """`--method`, whose choices are `evaluation.<methods>` (read when needed) and whose default is the library's."""
    parser.add_argument(
        "--method",
        nargs="+",
        default=None,
        choices=_options.LazyChoices(lambda: getattr(_evaluation(), methods)),
        metavar="METHOD",
        help=f"scoring method(s), of %(choices)s (default: {default})",
    )


def _add_sweep_options(parser) -> None:
    _options.add_model(parser)
    which = parser.add_mutually_exclusive_group()
    _options.add_revision(parser, group=which, help="branch, tag or commit of the model (default: main)")
    which.add_argument(
        "--all-revisions",
        action="store_true",
        help="evaluate every checkpoint-* branch and main, ordered by step; writes a CSV and a PNG",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("eval_results"),
        help="where --all-revisions writes its CSV and plot (default: eval_results/)",
    )
    parser.add_argument(
        "--plot-format",
        nargs="+",
        default=["png"],
        choices=_options.LazyChoices(_plot_formats),
        metavar="FORMAT",
        help="--all-revisions: format(s) of the accuracy-vs-step plot, of %(choices)s (default: png)",
    )
    _options.add_batch_size(
        parser, help="texts per forward pass (default: the fastest measured on a CPU, see benchmarks/README.md)"
    )
    _options.add_device(parser)
    _options.add_workers(parser)
    parser.add_argument(
        "--push-results",
        action="store_true",
        help="add the results (accuracy and 95 %% interval) to the model-index of the card on each evaluated "
        "revision; where the token cannot write the model, a pull request is opened instead",
    )
    parser.add_argument(
        "--create-pr",
        action="store_true",
        help="with --push-results: always propose the cards as pull requests (the owner merges them)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# ------------------------------------------------------------------------------------------------ handlers
def handle_eval_minpairs(args: argparse.Namespace) -> int:
    """Dialogue minimal-pair accuracy (real child answer preferred)."""
    evaluation = _evaluation()
    processes = _processes(args)
    # Every dataset is read first, so bad data fails before any model is loaded (on every process, with one outcome).
    with errors.from_flag("--data"):
        datasets = distributed.run_on_each(
            lambda: [evaluation.read_minpairs_data(d, split=args.split) for d in args.data], processes
        )
    return _sweep(args, "minpairs", datasets, processes)


def handle_eval_blimp(args: argparse.Namespace) -> int:
    """BLiMP accuracy per paradigm and macro-averaged."""
    evaluation = _evaluation()
    processes = _processes(args)
    with errors.from_flag("--suite"):
        suite = distributed.run_on_each(
            lambda: evaluation.read_blimp_suite(args.suite, lower_case=args.lower_case), processes
        )
    return _sweep(args, "blimp", [suite], processes)


def _processes(args: argparse.Namespace) -> distributed.Processes:
    """The launcher's processes (one without torchrun/accelerate launch), after the checks that need no model."""
    if args.create_pr and not args.push_results:
        raise errors.BabyhubError("--create-pr proposes the results of --push-results: add --push-results")
    return distributed.current_processes(args.device)


def _plot_formats() -> tuple[str, ...]:
    from hub_tools.evaluation.plots import FORMATS

    return FORMATS


def _sweep(args: argparse.Namespace, target: str, datasets: list, processes: distributed.Processes) -> int:
    evaluation = _evaluation()
    # 1. The model, and the revisions to evaluate.
    model = evaluation.EvalModel(
        args.model,
        device=args.device,
        batch_size=args.batch_size or evaluation.EVAL_BATCH_SIZE,
        workers=args.workers,
    )
    if args.push_results and model.is_local:
        raise errors.BabyhubError(
            f"--push-results needs a Hub model id: --model {args.model} is a local folder (push it first, e.g. "
            "with `babyhub train ... --push_to_hub`)"
        )
    with errors.from_flag("--model"):
        revisions = distributed.run_on_each(
            lambda: evaluation.select_revisions(model, args.revision, every=args.all_revisions), processes
        )
    # 2. Every revision on every dataset with every method (split over the processes of a launch).
    rows = evaluation.evaluate_revisions(
        model, revisions, datasets, args.method, progress=not args.json, processes=processes
    )
    if rows is None:
        return 0  # not the main process: it alone writes, pushes and prints
    # 3. Tables, plots and cards.
    output = {"model": args.model, "target": target, "results": [row.record() for row in rows]}
    if args.all_revisions:
        stem = evaluation.sweep_stem(args.output_dir, target, args.model)
        output["csv"] = str(evaluation.write_sweep_csv(rows, stem.with_suffix(".csv")))
        title = f"{args.model}: {'dialogue minimal pairs' if target == 'minpairs' else 'BLiMP'}"
        spe = evaluation.read_steps_per_epoch(args.model, revisions)
        plots = evaluation.plot_sweep(rows, stem, title=title, formats=args.plot_format, steps_per_epoch=spe)
        output["plot"] = str(plots[0])
        output["plots"] = [str(p) for p in plots]
    if args.push_results:
        pushed = evaluation.push_results(rows, create_pr=True if args.create_pr else "auto")
        output["pushed"] = {revision: p.commit for revision, p in pushed.items()}
        output["pull_requests"] = {revision: p.pr_url for revision, p in pushed.items() if p.pr_url}
    if args.json:
        json.dump(output, sys.stdout)
        print()
    else:
        _print_table(output["results"], target)
        if "csv" in output:
            print(f"csv: {output['csv']}")
        for path in output.get("plots", []):
            print(f"plot: {path}")
        for revision, commit in output.get("pushed", {}).items():
            url = output["pull_requests"].get(revision)
            if url:
                print(f"opened pull request {url} (results for the card of {args.model}@{revision})")
            elif commit:
                print(f"results added to the card of {args.model}@{revision}")
            else:
                print(f"card of {args.model}@{revision} already had these results")
    return 0


def handle_eval_compare(args: argparse.Namespace) -> int:
    """Two models on the same pairs: accuracies, paired difference with its 95 % interval, McNemar p.

    Score model A and model B on the same pairs and report each accuracy with its 95 % interval (Wilson), the
    difference A - B with its 95 % interval (Newcombe's hybrid score interval for paired data) and the exact
    McNemar p-value. Give the model being judged first and the reference second.
    """
    evaluation = _evaluation()
    from hub_tools.branches import Revision

    if distributed.launched_world_size() > 1:
        raise errors.BabyhubError(
            f"eval compare runs in one process, not in each of {distributed.launched_world_size()} launched "
            "processes: start it without torchrun/accelerate launch (a sweep of many revisions is what `eval "
            "minpairs|blimp` split over processes)"
        )
    if len(args.model) != 2:
        raise errors.BabyhubError(
            f"--model given {len(args.model)} time(s): give it exactly twice, the model to judge (A) then the "
            "reference (B)"
        )
    if not args.data and not args.suite:
        raise errors.BabyhubError("nothing to compare on: give --data (minimal pairs) and/or --suite (BLiMP)")
    # 1. The pairs, read and checked before any model is loaded.
    with errors.from_flag("--data"):
        datasets = [evaluation.read_minpairs_data(d, split=args.split) for d in args.data]
    if args.suite:
        with errors.from_flag("--suite"):
            datasets.append(evaluation.read_blimp_suite(args.suite, lower_case=args.lower_case))
    # 2. The two models, each at its revision.
    models, revisions = [], []
    for text in args.model:
        with errors.from_flag("--model"):
            source, revision = _model_and_revision(text)
        models.append(
            evaluation.EvalModel(
                source,
                device=args.device,
                batch_size=args.batch_size or evaluation.EVAL_BATCH_SIZE,
                workers=args.workers,
            )
        )
        revisions.append(Revision.of_branch(revision or "main"))
    # 3. Both on the same pairs, compared pair by pair.
    comparisons = evaluation.compare_models(
        *models, datasets, args.method, revision_a=revisions[0], revision_b=revisions[1], progress=not args.json
    )
    records = [c.record() for c in comparisons]
    if args.json:
        json.dump({"model_a": args.model[0], "model_b": args.model[1], "comparisons": records}, sys.stdout)
        print()
    else:
        _print_comparisons(comparisons, args.model)
    return 0


def _model_and_revision(text: str) -> tuple[str, str | None]:
    """`ID@REV` -> (ID, REV) for a Hub id; a local folder (which has no revisions) as it is."""
    if Path(text).exists() or "@" not in text:
        return text, None
    source, revision = text.rsplit("@", 1)
    try:
        return _options.repo_id(source), _options.revision(revision)
    except argparse.ArgumentTypeError as err:
        raise errors.BabyhubError(f"{text!r}: {err}") from err


def _interval(accuracy: float, low: float | None, high: float | None) -> str:
    return f"{accuracy:.4f}" + ("" if low is None else f" [{low:.4f}, {high:.4f}]")


def _print_table(records: list[dict], target: str) -> None:
    header = f"{'revision':<20} {'step':>7} {'dataset':<36} {'method':<23} {'accuracy [95 % interval]':<25} {'n':>6}"
    print(header)
    print("-" * len(header))
    for r in records:
        step = "" if r["step"] is None else r["step"]
        print(
            f"{r['revision']:<20} {step!s:>7} {r['dataset'][-36:]:<36} {r['method']:<23} "
            f"{_interval(r['accuracy'], r['ci95_low'], r['ci95_high']):<25} {r['n']:>6}"
        )
        if target == "blimp":
            for name, accuracy in sorted(r["paradigms"].items()):
                low, high = r["paradigm_ci95"].get(name, (None, None))
                print(f"    {name:<60} {_interval(accuracy, low, high)}")
    print(f"95 % intervals: {', '.join(sorted({r['interval'] for r in records}))} (see hub_tools/stats.py)")


def _print_comparisons(comparisons: list, models: list[str]) -> None:
    from hub_tools.stats import format_p_value

    print(f"A = {models[0]}\nB = {models[1]}")
    header = (
        f"{'dataset':<36} {'method':<23} {'n':>6}  {'A [95 % interval]':<25} {'B [95 % interval]':<25} "
        "A - B [95 % interval], McNemar p"
    )
    print(header)
    print("-" * len(header))
    for c in comparisons:
        r = c.record()
        a = _interval(r["accuracy_a"], r["ci95_low_a"], r["ci95_high_a"])
        b = _interval(r["accuracy_b"], r["ci95_low_b"], r["ci95_high_b"])
        difference = f"{r['difference']:+.4f} [{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}], "
        print(
            f"{r['dataset'][-36:]:<36} {r['method']:<23} {r['n']:>6}  {a:<25} {b:<25} "
            f"{difference}{format_p_value(r['p_value'])}"
        )
        right = f"A right, B wrong {r['a_right_b_wrong']}; A wrong, B right {r['a_wrong_b_right']}"
        print(f"    discordant pairs: {right}")
        if not c.pooled_equals_macro:
            print("    BLiMP paradigms of unequal size: the difference is over pooled pairs, not the macro-average")
