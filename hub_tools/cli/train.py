"""`babyhub baby bootstrap`, `babyhub train` and `babyhub plots`."""

from __future__ import annotations

import argparse

from hub_tools.training.baby import SIZES

# plots.FORMATS, without importing matplotlib for `babyhub --help` (tests/test_cli_wiring.py checks they agree).
_PLOT_FORMATS = ("png", "svg", "pdf")


def register(subparsers) -> None:
    """Add `baby bootstrap`, `train` and `plots` to `babyhub`."""
    baby = subparsers.add_parser("baby", help="make a baby language model of your own")
    baby_sub = baby.add_subparsers(dest="baby_command", metavar="COMMAND", required=True)
    boot = baby_sub.add_parser(
        "bootstrap",
        help="train a byte-level BPE tokenizer and a small Llama from scratch on the training text",
        description="Train a byte-level BPE tokenizer (BOS/EOS/PAD) and a LlamaForCausalLM from scratch with "
        "causal-LM loss on the dialogue text of the DPO training split only; save an HF model folder with a card.",
    )
    boot.add_argument("--train", required=True, help="training preference dataset: folder or Hub dataset id")
    boot.add_argument("--out", required=True, help="new folder for the model (must not exist or be empty)")
    boot.add_argument("--size", choices=list(SIZES), default="tiny", help="tiny ≈1 M params (CPU); small: GPU")
    boot.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: the size's epochs)")
    boot.add_argument("--seed", type=int, default=0)
    boot.add_argument("--dataset-id", default=None, help="Hub id of the training dataset, named in the card")
    boot.set_defaults(func=handle_baby_bootstrap)

    # `babyhub train` takes exactly train_dpo.py's arguments: every token goes to TrlParser untouched
    # ('+' as the only prefix char makes argparse leave `--flag value` alone).
    train = subparsers.add_parser(
        "train",
        help="DPO-train a baby (same arguments as `python train_dpo.py`; --help for all)",
        prefix_chars="+",
        add_help=False,
    )
    train.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    train.set_defaults(func=handle_train)

    plots = subparsers.add_parser(
        "plots",
        help="draw loss and reward curves from logs/training_metrics.csv files",
        description="Draw loss, rewards (chosen vs rejected), margins and accuracies of one or more runs, ready "
        "for a paper: labelled axes with units, epoch as a second axis when the runs agree on it, one colour per "
        "run in every figure, 200 dpi PNG, SVG (text kept as text) and PDF.",
    )
    plots.add_argument("metrics", nargs="+", help="training_metrics.csv file(s); several runs share each figure")
    plots.add_argument("--out", required=True, help="folder for the figures")
    plots.add_argument(
        "--label",
        nargs="+",
        action="extend",
        default=None,
        metavar="LABEL",
        help="one label per CSV, in order: --label A B (or --label A --label B)",
    )
    plots.add_argument(
        "--format",
        nargs="+",
        action="extend",
        default=None,
        choices=_PLOT_FORMATS,
        metavar="FORMAT",
        help=f"figure format(s), of {', '.join(_PLOT_FORMATS)} (default: png)",
    )
    plots.set_defaults(func=handle_plots)


def handle_baby_bootstrap(args: argparse.Namespace) -> int:
    from hub_tools.training.baby import bootstrap_baby

    out = bootstrap_baby(
        args.train, args.out, size=args.size, max_steps=args.max_steps, seed=args.seed, dataset_id=args.dataset_id
    )
    print(f"baby saved to {out}")
    return 0


def handle_train(args: argparse.Namespace) -> int:
    import train_dpo

    return train_dpo.run(args.argv, prog="babyhub train")


def handle_plots(args: argparse.Namespace) -> int:
    from hub_tools.evaluation.plots import plot_metrics

    written = plot_metrics(args.metrics, args.out, labels=args.label, formats=args.format or ["png"])
    for path in written:
        print(path)
    return 0
