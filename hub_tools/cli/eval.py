"""`babyhub eval minpairs` and `babyhub eval blimp`: accuracy of a model, a revision, or every checkpoint.

    babyhub eval minpairs --model me/baby-dpo --data me/child-dpo-preferences-eval
    babyhub eval minpairs --model me/baby-dpo --all-revisions --data me/child-dpo-preferences-eval \\
        --method sequence_mean answer_sum --output-dir results/
    babyhub eval blimp --model me/baby-dpo --revision checkpoint-2000 --suite ../shared/data/blimp --lower-case
    babyhub eval minpairs --model ./out/baby --data ../shared/data/minpairs/len_pairs_no_overlap_1.csv --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub_tools import errors
from hub_tools.cli import _options


def _evaluation():
    # Imported when a command runs (or asks for the method choices), not with the parser: hub_tools.evaluation
    # imports the scorer (torch), which takes seconds that `babyhub --help` should not spend. For the same
    # reason the defaults of --method and --batch-size are None here and the library's own (`EvalModel`,
    # `evaluate_revisions`).
    from hub_tools import evaluation

    return evaluation


def register(subparsers) -> None:
    """Add `eval minpairs` and `eval blimp` to `babyhub`."""
    evaluate = subparsers.add_parser("eval", help="evaluate a model on dialogue minimal pairs or BLiMP")
    commands = evaluate.add_subparsers(dest="eval_command", metavar="TARGET", required=True)

    minpairs = commands.add_parser("minpairs", help="dialogue minimal-pair accuracy (real child answer preferred)")
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
    minpairs.set_defaults(func=handle_eval_minpairs)

    blimp = commands.add_parser("blimp", help="BLiMP accuracy per paradigm and macro-averaged")
    _add_sweep_options(blimp)
    blimp.add_argument("--suite", required=True, metavar="DIR", help="folder of BLiMP <paradigm>.txt files")
    blimp.add_argument("--lower-case", action="store_true", help="lower-case the sentences (CHILDES text is)")
    _add_methods(blimp, "BLIMP_METHODS", default="sequence_sum_bow")
    blimp.set_defaults(func=handle_eval_blimp)


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
        help="where --all-revisions writes its CSV and PNG (default: eval_results/)",
    )
    _options.add_batch_size(
        parser, help="texts per forward pass (default: the fastest measured on a CPU, see benchmarks/README.md)"
    )
    _options.add_device(parser)
    _options.add_workers(parser)
    parser.add_argument(
        "--push-results",
        action="store_true",
        help="add the results to the model-index of the model card on each evaluated revision",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# ------------------------------------------------------------------------------------------------ handlers
def handle_eval_minpairs(args: argparse.Namespace) -> int:
    evaluation = _evaluation()
    # Every dataset is read first, so bad data fails before any model is loaded.
    with errors.from_flag("--data"):
        datasets = [evaluation.read_minpairs_data(d, split=args.split) for d in args.data]
    return _sweep(args, "minpairs", datasets)


def handle_eval_blimp(args: argparse.Namespace) -> int:
    evaluation = _evaluation()
    with errors.from_flag("--suite"):
        suite = evaluation.read_blimp_suite(args.suite, lower_case=args.lower_case)
    return _sweep(args, "blimp", [suite])


def _sweep(args: argparse.Namespace, target: str, datasets: list) -> int:
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
        revisions = evaluation.select_revisions(model, args.revision, every=args.all_revisions)
    # 2. Every revision on every dataset with every method.
    rows = evaluation.evaluate_revisions(model, revisions, datasets, args.method, progress=not args.json)
    # 3. Tables, plots and cards.
    output = {"model": args.model, "target": target, "results": [row.record() for row in rows]}
    if args.all_revisions:
        stem = evaluation.sweep_stem(args.output_dir, target, args.model)
        output["csv"] = str(evaluation.write_sweep_csv(rows, stem.with_suffix(".csv")))
        title = f"{args.model}: {'dialogue minimal pairs' if target == 'minpairs' else 'BLiMP'}"
        output["plot"] = str(evaluation.plot_sweep(rows, stem.with_suffix(".png"), title=title))
    if args.push_results:
        output["pushed"] = evaluation.push_results(rows)
    if args.json:
        json.dump(output, sys.stdout)
        print()
    else:
        _print_table(output["results"], target)
        for key in ("csv", "plot"):
            if key in output:
                print(f"{key}: {output[key]}")
        for revision, oid in output.get("pushed", {}).items():
            print(
                f"results added to the card of {args.model}@{revision}"
                if oid
                else f"card of {args.model}@{revision} already had these results"
            )
    return 0


def _print_table(records: list[dict], target: str) -> None:
    header = f"{'revision':<20} {'step':>7} {'dataset':<36} {'method':<17} {'accuracy':>8} {'n':>6}"
    print(header)
    print("-" * len(header))
    for r in records:
        step = "" if r["step"] is None else r["step"]
        print(
            f"{r['revision']:<20} {step!s:>7} {r['dataset'][-36:]:<36} {r['method']:<17} "
            f"{r['accuracy']:>8.4f} {r['n']:>6}"
        )
        if target == "blimp":
            for name, accuracy in sorted(r["paradigms"].items()):
                print(f"    {name:<60} {accuracy:.4f}")
