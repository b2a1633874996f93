"""`babyhub data build`, `babyhub data synthesize` and `babyhub push`.

    # the published DPO datasets from the real minimal-pair CSVs
    babyhub data build --pairs ../shared/data/minpairs/len_pairs_no_overlap_1.csv \\
        --tok-pairs ../shared/data/minpairs/tok_pairs_no_overlap_1.csv --out build/data
    # without --pairs: babyhub's small made-up sample (offline demo)
    babyhub data build --out build/demo-data
    # a synthetic split whose chosen answers come from a teacher LLM (`babyhub teacher fetch` gets one offline)
    babyhub data synthesize --train build/data/child-dpo-preferences --teacher build/teacher \\
        --out build/data/child-dpo-preferences-synthetic
    # the original's synthesis: a base model, its plain prompt, every row kept, no speaker tags
    babyhub data synthesize --train build/data/child-dpo-preferences --teacher meta-llama/Llama-3.2-3B \\
        --prompt-style completion --no-filter --format plain --out build/data/child-dpo-preferences-synthetic
    # on N processes (batches dealt out by index; the same rows as one process; GPUs: accelerate launch --device cuda)
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m hub_tools data synthesize \\
        --train build/data/child-dpo-preferences --teacher build/teacher --out build/data/synthetic
    # a large teacher split over 4 GPUs by vLLM (one process: vLLM starts its own workers)
    babyhub data synthesize --backend vllm --tensor-parallel-size 4 --teacher meta-llama/Llama-3.2-3B ...
    # publish a built folder (one commit; identical content makes no commit)
    babyhub push build/data/child-dpo-preferences --repo-id me/child-dpo-preferences --repo-type dataset
"""

from __future__ import annotations

import argparse

from hub_tools import errors, repos
from hub_tools.cli import _options
from hub_tools.data.sampling import Sampling
from hub_tools.data.synthesize import (
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_WORDS,
    PROMPT_STYLES,
    TEXT_FORMATS,
)

DEFAULT_SAMPLING = Sampling()


def _non_negative_float(text: str) -> float:
    """argparse type of a temperature: a number >= 0 (0 is greedy)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0 (0 is greedy), got {text}")
    return value


def _probability(text: str) -> float:
    """argparse type of top_p: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 keeps every token), got {text}")
    return value


def register(subparsers) -> None:
    """Add `data build`, `data synthesize` and `push` to `babyhub`."""
    data_sub = _options.add_command_group(subparsers, "data", help="Build, synthesize the DPO preference datasets")

    build = _options.add_command(data_sub, "build", handle_data_build)
    _options.add_pairs(build)
    _options.add_out(build, help="folder that receives the dataset folders")
    build.add_argument(
        "--train-rows",
        type=_options.positive_int,
        default=None,
        help="rows [0, N) form the training split (default: 18000 as published; 240 for the made-up sample)",
    )
    build.add_argument(
        "--format",
        dest="text_format",
        choices=["tags", "plain"],
        default="tags",
        help="text convention of every split: keep speaker tags (*MOT:/*CHI:, default, as published) or plain",
    )
    build.add_argument(
        "--skip-invalid", action="store_true", help="skip invalid rows and count them instead of stopping"
    )
    build.add_argument(
        "--dedupe-eval",
        action="store_true",
        help="remove evaluation rows whose (prompt, chosen) pair also occurs in training",
    )

    synth = _options.add_command(data_sub, "synthesize", handle_data_synthesize)
    _options.add_train(synth, help="training preference dataset folder (child-dpo-preferences)")
    synth.add_argument("--teacher", required=True, help="teacher model: local folder or Hub id")
    _options.add_out(synth, help="output dataset folder (child-dpo-preferences-synthetic)")
    synth.add_argument("--backend", choices=BACKENDS, default="transformers")
    _options.add_revision(synth, help="teacher revision (branch, tag or commit)")
    _options.add_batch_size(
        synth, default=DEFAULT_BATCH_SIZE, help=f"prompts per generation batch (default: {DEFAULT_BATCH_SIZE})"
    )
    synth.add_argument("--seed", type=int, default=0, help="the run's seed; row r samples with its own seed")
    synth.add_argument(
        "--limit", type=_options.positive_int, default=None, help="only the first N training rows (for trials)"
    )
    synth.add_argument(
        "--max-words",
        type=_options.positive_int,
        default=DEFAULT_MAX_WORDS,
        help=f"longer answers are filtered out (default {DEFAULT_MAX_WORDS})",
    )
    synth.add_argument(
        "--prompt-style",
        choices=PROMPT_STYLES,
        default="auto",
        help="chat: the teacher's chat template (system + user message); completion: the original's plain "
        "prompt and stops, for base models; auto (default): chat when the teacher has a chat template",
    )
    synth.add_argument(
        "--keep-case",
        action="store_true",
        help="keep the answers' case (default: lower-cased, as the original and as CHILDES transcribes)",
    )
    synth.add_argument(
        "--no-filter",
        action="store_true",
        help="keep every row, aligned 1:1 with the training split, as the original (default: drop empty, "
        "mother-repeating and overlong answers, counted in the card)",
    )
    synth.add_argument(
        "--format",
        dest="text_format",
        choices=TEXT_FORMATS,
        default=None,
        help="tags (*MOT:/*CHI:) or plain (the original's published synthetic split); default: the training split's",
    )
    synth.add_argument(
        "--temperature",
        type=_non_negative_float,
        default=DEFAULT_SAMPLING.temperature,
        help=f"sampling temperature, 0 = greedy (default {DEFAULT_SAMPLING.temperature}, the original's)",
    )
    synth.add_argument(
        "--top-p",
        type=_probability,
        default=DEFAULT_SAMPLING.top_p,
        help=f"nucleus sampling's top_p (default {DEFAULT_SAMPLING.top_p}, the original's)",
    )
    synth.add_argument(
        "--top-k",
        type=_options.positive_int,
        default=DEFAULT_SAMPLING.top_k,
        help="sample from the k most likely tokens only (default: no top-k, as the original's vLLM run)",
    )
    synth.add_argument(
        "--max-new-tokens",
        type=_options.positive_int,
        default=DEFAULT_SAMPLING.max_new_tokens,
        help=f"new tokens per answer at most (default {DEFAULT_SAMPLING.max_new_tokens}, the original's)",
    )
    _options.add_device(synth, help="torch device for the transformers backend")
    synth.add_argument("--api-base", default=None, help="openai backend: base URL (default: $OPENAI_BASE_URL)")
    synth.add_argument(
        "--tensor-parallel-size",
        type=_options.positive_int,
        default=1,
        metavar="N",
        help="vllm backend: split one teacher over N GPUs (vLLM starts its own workers; run it without torchrun)",
    )
    synth.add_argument("--restart", action="store_true", help="discard an interrupted run's state and start over")

    push = _options.add_command(subparsers, "push", handle_push)
    push.add_argument(
        "folder",
        type=_options.existing_dir("a folder built by babyhub (e.g. `babyhub data build`)"),
        help="folder to push (e.g. build/data/child-dpo-preferences)",
    )
    _options.add_repo_id(push)
    push.add_argument("--repo-type", choices=repos.REPO_TYPES, default="dataset")
    _options.add_revision(push, default="main", help="branch to push to (default: main)")
    _options.add_private(push)
    push.add_argument("--message", default=None, help="commit message")
    push.add_argument(
        "--overwrite-branch",
        action="store_true",
        help="let a push to a non-main --revision replace a branch that holds other content (refused by default)",
    )


def handle_data_build(args: argparse.Namespace) -> int:
    """Build the DPO preference datasets (train / eval / eval-tokens) from minimal-pair CSVs.

    Read and validate dialogue minimal-pair CSVs and write Hub-ready dataset folders (README.md card +
    data/*.parquet): child-dpo-preferences (rows [0, --train-rows)), child-dpo-preferences-eval (the rest) and,
    with --tok-pairs, child-dpo-preferences-eval-tokens. Nothing is written if a row is invalid.
    """
    from hub_tools.data.minpairs import SAMPLE_PAIRS, InvalidRow
    from hub_tools.data.preferences import build_preference_datasets

    if args.pairs is None:
        print(f"no --pairs given: building from the made-up sample {SAMPLE_PAIRS.name} (not CHILDES data)")
    try:
        report = build_preference_datasets(
            args.pairs,
            args.out,
            tok_pairs_csv=args.tok_pairs,
            train_rows=args.train_rows,
            text_format=args.text_format,
            skip_invalid=args.skip_invalid,
            dedupe_eval=args.dedupe_eval,
        )
    except InvalidRow as err:
        raise errors.BabyhubError(f"{err} Pass --skip-invalid to skip such rows and count them instead.") from err
    print(report.summary())
    return 0


def handle_data_synthesize(args: argparse.Namespace) -> int:
    """Make a synthetic split: a teacher LLM writes the chosen child answers.

    For every training prompt, ask a teacher LLM for a child answer (the communicative-baby prompt); keep the
    real mismatched answer as `rejected`. Batched, with progress; rerunning after an interruption resumes where it
    stopped and gives the same rows. The defaults are babyhub's (chat template for instruct teachers, lower-cased,
    filtered, the training split's format); --prompt-style completion --no-filter --format plain is the original's
    synthesis. The card records every setting.
    """
    from hub_tools.data.synthesize import read_train_rows, synthesize_preferences

    sampling = Sampling(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, top_k=args.top_k
    )
    # The training split is read once here so that its errors name --train (the teacher's name the teacher);
    # the rest of the library's messages name the folder or model they are about.
    with errors.from_flag("--train"):
        read_train_rows(args.train)
    report = synthesize_preferences(
        args.train,
        args.teacher,
        args.out,
        backend=args.backend,
        revision=args.revision,
        batch_size=args.batch_size,
        seed=args.seed,
        limit=args.limit,
        max_words=args.max_words,
        sampling=sampling,
        prompt_style=args.prompt_style,
        lowercase=not args.keep_case,
        filter_rows=not args.no_filter,
        text_format=args.text_format,
        device=args.device,
        api_base=args.api_base,
        tensor_parallel_size=args.tensor_parallel_size,
        restart=args.restart,
    )
    if report is None:
        return 0  # not the main process of a launch: the main process writes the split and prints
    print(report.summary())
    return 0


def handle_push(args: argparse.Namespace) -> int:
    """Push a built folder (dataset, model, Space) to the Hub in one commit.

    Upload a folder to a Hub repository in one commit (endpoint and token from the environment: HF_ENDPOINT,
    HF_TOKEN). Creates the repository if needed; identical content makes no new commit.
    """
    from hub_tools.hub.publish import push_folder

    result = push_folder(
        args.folder,
        args.repo_id,
        repo_type=args.repo_type,
        revision=args.revision,
        private=args.private,
        commit_message=args.message,
        overwrite_branch=args.overwrite_branch,
    )
    print(_options.pushed(result, args.folder))
    return 0
