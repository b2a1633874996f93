"""`babyhub baby bootstrap`, `babyhub train` and `babyhub plots`."""

from __future__ import annotations

import argparse

from hub_tools.cli import _options
from hub_tools.training.baby import SIZES

# plots.FORMATS, without importing matplotlib for `babyhub --help` (tests/test_cli_wiring.py checks they agree).
_PLOT_FORMATS = ("png", "svg", "pdf")


def register(subparsers) -> None:
    """Add `baby bootstrap`, `train` and `plots` to `babyhub`."""
    baby_sub = _options.add_command_group(subparsers, "baby", help="Make a baby language model of your own")
    boot = _options.add_command(baby_sub, "bootstrap", handle_baby_bootstrap)
    _options.add_train(boot)
    _options.add_out(boot, help="new folder for the model (must not exist or be empty)")
    boot.add_argument("--size", choices=list(SIZES), default="tiny", help="tiny ≈1 M params (CPU); small: GPU")
    boot.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: the size's epochs)")
    boot.add_argument("--seed", type=int, default=0)
    boot.add_argument("--dataset-id", default=None, help="Hub id of the training dataset, named in the card")

    # `babyhub train` takes exactly train_dpo.py's arguments: every token goes to TrlParser untouched
    # ('+' as the only prefix char makes argparse leave `--flag value` alone).
    train = _options.add_command(
        subparsers,
        "train",
        handle_train,
        prefix_chars="+",
        add_help=False,
    )
    train.add_argument("argv", nargs="*", help=argparse.SUPPRESS)

    plots = _options.add_command(subparsers, "plots", handle_plots)
    plots.add_argument("metrics", nargs="+", help="training_metrics.csv file(s); several runs share each figure")
    _options.add_out(plots, help="folder for the figures")
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


def handle_baby_bootstrap(args: argparse.Namespace) -> int:
    """Train a byte-level BPE tokenizer and a small Llama from scratch on the training text.

    Train a byte-level BPE tokenizer (BOS/EOS/PAD) and a LlamaForCausalLM from scratch with causal-LM loss on
    the dialogue text of the DPO training split only; save an HF model folder with a card.
    """
    from hub_tools.training.baby import bootstrap_baby

    out = bootstrap_baby(
        args.train, args.out, size=args.size, max_steps=args.max_steps, seed=args.seed, dataset_id=args.dataset_id
    )
    print(f"baby saved to {out}")
    return 0


def handle_train(args: argparse.Namespace) -> int:
    """DPO-train a baby (the arguments of `python train_dpo.py`, --help for all; --num-processes N runs N processes
    through torchrun on CPUs, accelerate launch on GPUs).
    """
    import train_dpo
    from hub_tools.training.launch import run_processes, split_num_processes
    from hub_tools.training.processes import PeerFailed

    num_processes, argv = split_num_processes(args.argv)
    if num_processes > 1:
        return run_processes(train_dpo.__file__, argv, num_processes)
    try:
        return train_dpo.run(argv, prog="babyhub train")
    except PeerFailed as err:  # a process of a launched run: another one failed first and printed why
        return err.exit_code


def handle_plots(args: argparse.Namespace) -> int:
    """Draw loss and reward curves from logs/training_metrics.csv files.

    Draw loss, rewards (chosen vs rejected), margins and accuracies of one or more runs, ready for a paper:
    labelled axes with units, epoch as a second axis when the runs agree on it, one colour per run in every
    figure, 200 dpi PNG, SVG (text kept as text) and PDF.
    """
    from hub_tools.evaluation.plots import plot_metrics

    written = plot_metrics(args.metrics, args.out, labels=args.label, formats=args.format or ["png"])
    for path in written:
        print(path)
    return 0
