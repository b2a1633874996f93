"""`babyhub eval minpairs` and `babyhub eval blimp`: accuracy of a model, a revision, or every checkpoint.

    babyhub eval minpairs --model me/baby-dpo --data me/child-dpo-preferences-eval
    babyhub eval minpairs --model me/baby-dpo --all-revisions --data me/child-dpo-preferences-eval \
        --method sequence_mean answer_sum --output-dir results/
    babyhub eval blimp --model me/baby-dpo --revision checkpoint-2000 --suite ../shared/data/blimp --lower-case
    babyhub eval minpairs --model ./out/baby --data ../shared/data/minpairs/len_pairs_no_overlap_1.csv --json
"""

import json
import re
import sys
from pathlib import Path

from hub_tools.errors import BabyhubError

# Texts per batch for `babyhub eval` and the demo: the fastest of 64-512 on the eval pairs (benchmarks/README.md).
EVAL_BATCH_SIZE = 256

MINPAIR_METHODS = ("sequence_mean", "sequence_sum_bow", "answer_sum", "answer_mean")  # = scoring.METHODS
BLIMP_METHODS = ("sequence_sum_bow", "sequence_mean")


def register(subparsers) -> None:
    """Add `eval minpairs` and `eval blimp` to `babyhub`."""
    evaluate = subparsers.add_parser("eval", help="evaluate a model on dialogue minimal pairs or BLiMP")
    commands = evaluate.add_subparsers(dest="eval_command", metavar="TARGET", required=True)

    minpairs = commands.add_parser("minpairs", help="dialogue minimal-pair accuracy (real child answer preferred)")
    _add_model_arguments(minpairs)
    minpairs.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="D",
        help="minimal pairs: dataset folder(s), Hub dataset id(s) or CSV(s) in the published format",
    )
    minpairs.add_argument("--split", default="train", help="dataset split to evaluate (default: train)")
    minpairs.add_argument(
        "--method",
        nargs="+",
        default=["sequence_mean"],
        choices=MINPAIR_METHODS,
        help="scoring method(s) (default: sequence_mean, the DPO write-up's)",
    )
    minpairs.set_defaults(func=run_minpairs)

    blimp = commands.add_parser("blimp", help="BLiMP accuracy per paradigm and macro-averaged")
    _add_model_arguments(blimp)
    blimp.add_argument("--suite", required=True, metavar="DIR", help="folder of BLiMP <paradigm>.txt files")
    blimp.add_argument("--lower-case", action="store_true", help="lower-case the sentences (CHILDES text is)")
    blimp.add_argument(
        "--method",
        nargs="+",
        default=["sequence_sum_bow"],
        choices=BLIMP_METHODS,
        help="scoring method(s) (default: sequence_sum_bow)",
    )
    blimp.set_defaults(func=run_blimp)


def _add_model_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="Hub model id or local model folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--revision", help="branch, tag or commit of the model (default: main)")
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
    parser.add_argument(
        "--batch-size", type=int, default=EVAL_BATCH_SIZE, help=f"texts per forward pass (default: {EVAL_BATCH_SIZE})"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CPU scoring threads, each scoring whole batches (default: torch's thread count)",
    )
    parser.add_argument(
        "--push-results",
        action="store_true",
        help="add the results to the model-index of the model card on each evaluated revision",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# ------------------------------------------------------------------------------------------------ handlers
def run_minpairs(args) -> int:
    from hub_tools import evaluation

    _check_arguments(args)
    # 1. Read every dataset first, so bad data fails before any model is loaded.
    datasets = [evaluation.read_minpairs_data(d, split=args.split) for d in args.data]
    # 2. Evaluate each revision on each dataset with each method.
    rows, card_results = [], {}
    for revision in _revisions(args):
        scorer = _load_scorer(args, revision.name)
        for data in datasets:
            for method in args.method:
                result = evaluation.evaluate_minpairs(scorer, data, method, progress=not args.json)
                rows.append(evaluation.result_row(args.model, revision, result))
                card_results.setdefault(revision.name, []).append(evaluation.minpairs_eval_result(result))
    # 3. Tables, plots and cards.
    return _finish(args, "minpairs", rows, card_results)


def run_blimp(args) -> int:
    from hub_tools import evaluation

    _check_arguments(args)
    suite = evaluation.read_blimp_suite(args.suite, lower_case=args.lower_case)
    rows, card_results = [], {}
    for revision in _revisions(args):
        scorer = _load_scorer(args, revision.name)
        for method in args.method:
            result = evaluation.evaluate_blimp(scorer, suite, method, progress=not args.json)
            rows.append({**evaluation.result_row(args.model, revision, result), "dataset": "blimp"})
            card_results.setdefault(revision.name, []).append(evaluation.blimp_eval_result(result))
    return _finish(args, "blimp", rows, card_results)


# ------------------------------------------------------------------------------------------------ steps
def _is_local(model: str) -> bool:
    return Path(model).exists()


def _check_arguments(args) -> None:
    if args.batch_size < 1:
        raise BabyhubError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise BabyhubError(f"--workers must be at least 1, got {args.workers}")
    if _is_local(args.model) and (args.all_revisions or args.revision or args.push_results):
        raise BabyhubError(
            f"--model {args.model} is a local folder: --revision, --all-revisions and --push-results need a Hub "
            "model id (push the model first, e.g. with `babyhub train ... --push_to_hub`)"
        )


def _revisions(args):
    from hub_tools.branches import checkpoint_step
    from hub_tools.evaluation import Revision, list_revisions

    if args.all_revisions:
        revisions = list_revisions(args.model)
        if not revisions:
            raise BabyhubError(f"--model {args.model}: the repo has no main or checkpoint-* branch to evaluate")
        return revisions
    name = args.revision or "main"
    return [Revision(name, checkpoint_step(name))]


def _load_scorer(args, revision: str):
    from hub_tools.scoring import Scorer, default_workers

    try:
        return Scorer.from_pretrained(
            args.model,
            None if _is_local(args.model) else revision,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers or default_workers(args.device),
        )
    except OSError as err:
        raise BabyhubError(
            f"could not load model {args.model} at revision {revision}: {err}. Check the id, the revision "
            "(`--revision`) and HF_ENDPOINT"
        ) from err


def _finish(args, target: str, rows: list[dict], card_results: dict) -> int:
    from hub_tools import evaluation

    output = {"model": args.model, "target": target, "results": rows}
    if args.all_revisions:
        stem = args.output_dir / f"{target}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.model)}"
        output["csv"] = str(evaluation.write_sweep_csv(rows, stem.with_suffix(".csv")))
        title = f"{args.model}: {'dialogue minimal pairs' if target == 'minpairs' else 'BLiMP'}"
        output["plot"] = str(evaluation.plot_sweep(rows, stem.with_suffix(".png"), title=title))
    if args.push_results:
        pushed = {}
        for revision, results in card_results.items():
            result = evaluation.push_results_to_card(args.model, revision, results)
            pushed[revision] = result.commit_oid
        output["pushed"] = pushed
    if args.json:
        json.dump(output, sys.stdout)
        print()
    else:
        _print_table(rows, target)
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


def _print_table(rows: list[dict], target: str) -> None:
    header = f"{'revision':<20} {'step':>7} {'dataset':<36} {'method':<17} {'accuracy':>8} {'n':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        step = "" if r["step"] is None else r["step"]
        print(
            f"{r['revision']:<20} {step!s:>7} {r['dataset'][-36:]:<36} {r['method']:<17} "
            f"{r['accuracy']:>8.4f} {r['n']:>6}"
        )
        if target == "blimp":
            for name, accuracy in sorted(r["paradigms"].items()):
                print(f"    {name:<60} {accuracy:.4f}")
