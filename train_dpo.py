"""DPO fine-tuning of a baby language model, every checkpoint on the Hub with its own card.

Shaped like TRL's `trl/scripts/dpo.py`: dataclass arguments parsed by `TrlParser` (defaults < YAML
`--config` < CLI flags) with TRL's standard names. `babyhub train ...` runs the same thing. The machinery
(arguments, data checks, the packed-pairs trainer, callbacks, cards) lives in `hub_tools.training`.

# Offline: the bootstrapped tiny baby on the CPU, pushing to the local hub (`babyhub hub serve`)
```bash
python train_dpo.py --config recipes/tiny-cpu.yaml \
    --model_name_or_path out/baby-llama \
    --dataset_name out/data/child-dpo-preferences \
    --eval_dataset_name out/data/child-dpo-preferences-eval \
    --output_dir out/baby-dpo \
    --push_to_hub --hub_model_id me/baby-dpo
```

# On N processes: torchrun on CPUs (gloo), accelerate launch on GPUs (configs in recipes/accelerate/)
```bash
torchrun --nproc_per_node 2 train_dpo.py --config recipes/tiny-cpu.yaml ...     # or: babyhub train --num-processes 2
```

# The original experiment (GPU): real and synthetic preferences, with babyhub's settings
```bash
python train_dpo.py --config recipes/dpo-real.yaml --hub_model_id me/another-llama-dpo-real --push_to_hub
python train_dpo.py --config recipes/dpo-synthetic.yaml --hub_model_id me/another-llama-dpo-synthetic --push_to_hub
```

# The original run exactly: 2 GPUs x 4 x 4 pairs a step, TRL 0.19.1's token sequences, fp32 weights + bf16 autocast
```bash
accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 \
    train_dpo.py --config recipes/original-2gpu.yaml --hub_model_id me/another-llama-dpo-original --push_to_hub
```

# Resume after a crash, from a local checkpoint or from a checkpoint branch on the Hub
```bash
python train_dpo.py --config recipes/tiny-cpu.yaml ... --resume_from_checkpoint me/baby-dpo@checkpoint-40
```

`--push_to_hub` switches on babyhub's own checkpoint pushing (each save to branch `checkpoint-<step>`
from a background queue, the final model to `main`); the Trainer's push machinery stays off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hub_tools.hubenv import configure_for_endpoint

# Local-hub client settings must be in the environment before TRL imports huggingface_hub.
configure_for_endpoint()

from hub_tools.branches import checkpoint_step  # noqa: E402
from hub_tools.errors import BabyhubError, from_flag  # noqa: E402
from hub_tools.training.config import BabyDPOConfig, BabyScriptArguments  # noqa: E402


def main(script_args: BabyScriptArguments, training_args: BabyDPOConfig, model_args) -> int:
    """Train, save and (with `--push_to_hub`) push; returns the exit code (1 when a push failed for good).

    Under `torchrun` or `accelerate launch` every process runs this whole; the main process alone writes the
    metrics CSV, the plots and the cards and pushes (see `hub_tools.training.processes`).
    """
    from hub_tools.training import callbacks, checkpoints, checks, config, metrics, trainer
    from hub_tools.training.card import RunCard
    from hub_tools.training.processes import Processes

    output_dir = Path(training_args.output_dir)
    if script_args.fuse_gradient_accumulation:  # the same loss and gradient, in one pass
        config.fuse_gradient_accumulation(training_args)
    processes = Processes.of(training_args)  # one, or the ranks torchrun / accelerate launch started

    # Load the tokenizer and the training data, checked (each node's first process fills the datasets cache)
    tokenizer, train = processes.run(load_training_data, script_args, model_args, training_args, on="local_main_first")

    # Load the evaluation pairs every card is scored on (the main process writes the cards)
    with from_flag("--eval_dataset_name"):
        eval_pairs = processes.run(
            checks.read_eval_pairs, script_args.eval_dataset_name, revision=script_args.eval_dataset_revision,
            split=script_args.eval_dataset_split, max_pairs=script_args.eval_max_pairs, on="main",
        )  # fmt: skip
    card = RunCard.from_args(script_args, training_args, model_args, eval_pairs)

    # Resume from a local checkpoint or a Hub branch (downloaded once per node, then read by every process)
    with from_flag("--resume_from_checkpoint"):
        resume = processes.run(
            checkpoints.resolve_resume, training_args.resume_from_checkpoint, output_dir / ".resume",
            download=processes.is_local_main, on="local_main_first",
        )  # fmt: skip

    # Write every log row to the metrics CSV; with --push_to_hub, queue every checkpoint for its own branch
    metrics_log = metrics.MetricsLog(metrics.metrics_path(script_args.metrics_file, output_dir))
    run_callbacks = [callbacks.MetricsCSVCallback(metrics_log), callbacks.ResumedScheduleCallback()]
    pushes = None
    if training_args.push_checkpoints:
        with from_flag("--hub_model_id"):  # a fresh run never mixes into a repo with checkpoints
            pushes = processes.run(
                callbacks.PushCheckpointsCallback.start, training_args.hub_model_id, output_dir, card, resume,
                private=bool(training_args.hub_private_repo), on="main",
            )  # fmt: skip
        run_callbacks += [pushes] if pushes else []

    # Load the model (fp32 on a CPU) and train, each process on its shard of every batch
    model = trainer.load_model(model_args.model_name_or_path, model_args.model_revision, model_args.dtype)
    dpo = trainer.trainer_class(script_args.pack_pairs)(
        model=model, args=training_args, train_dataset=train, processing_class=tokenizer, callbacks=run_callbacks
    )
    with processes.stopped_by_launcher():
        try:
            dpo.train(resume_from_checkpoint=resume.path if resume else None)
        except Exception:
            if pushes:  # the checkpoints saved before the failure are trained: push them before stopping
                processes.ignore_launcher_stop()
                finish_pushes(pushes.pusher, training_args.hub_model_id, training_args.output_dir)
            raise

    # Save the final model with its step (for `babyhub eval`), its curves and its card
    step = trainer.save_final_model(dpo, card, metrics_log.path, pushes.branches if pushes else ())
    if not processes.is_main:
        return 0
    print(f"train_dpo: model saved to {output_dir} (step {step}).")

    # Wait for the checkpoint queue, then push the final model to main
    return push_final(pushes.pusher, training_args, step) if pushes else 0


def load_training_data(script_args: BabyScriptArguments, model_args, training_args: BabyDPOConfig):
    """The tokenizer (checked for the special tokens DPO relies on) and the training split, tokenized and checked."""
    from hub_tools.training import checks

    with from_flag("--model_name_or_path"):
        tokenizer = checks.load_tokenizer(model_args.model_name_or_path, model_args.model_revision)
    with from_flag("--dataset_name"):
        train, report = checks.read_train_dataset(
            script_args.dataset_name, tokenizer, revision=script_args.dataset_revision,
            split=script_args.dataset_train_split, max_length=training_args.max_length,
            tokenization=script_args.tokenization,
        )  # fmt: skip
    if training_args.process_index == 0:
        print(f"train_dpo: {report.describe()}")
    return tokenizer, train


def finish_pushes(pusher, repo_id: str, output_dir: str, timeout: float = 25.0) -> None:
    """After a failed run: wait (at most `timeout` s, within the launcher's 30 s) for the queued checkpoint pushes."""
    try:
        queue_report = pusher.close(timeout=timeout)
    except TimeoutError:
        print(f"train_dpo: checkpoint pushes still running after {timeout:.0f}s; the files are in {output_dir}.",
              file=sys.stderr)  # fmt: skip
        return
    for revision in sorted(queue_report.pushed, key=checkpoint_step):
        print(f"train_dpo: pushed {repo_id}@{revision} before stopping", file=sys.stderr)
    for revision, error in queue_report.failed.items():
        print(f"train_dpo: FAILED to push {revision}: {error}; the files are in {output_dir}", file=sys.stderr)


def push_final(pusher, training_args: BabyDPOConfig, step: int) -> int:
    """Close the checkpoint queue, push the final model to main, print what landed; 1 when anything failed."""
    from hub_tools.training.checkpoints import push_final_model

    queue_report = pusher.close()
    failed = dict(queue_report.failed)
    repo_id, output_dir = training_args.hub_model_id, training_args.output_dir
    try:
        result = push_final_model(output_dir, repo_id, step=step, private=bool(training_args.hub_private_repo))
        print(f"train_dpo: pushed the final model to {result.url}")
    except Exception as err:  # report with the others: the files are safe in output_dir
        failed["main"] = f"{type(err).__name__}: {err}"
    for revision in sorted(queue_report.pushed, key=checkpoint_step):
        print(f"train_dpo: pushed {repo_id}@{revision}")
    if not failed:
        return 0
    for revision, error in failed.items():
        print(f"train_dpo: FAILED to push {revision}: {error}", file=sys.stderr)
    print(
        f"train_dpo: the files are in {output_dir}; run the same command with --resume_from_checkpoint "
        "to retry the pushes.",
        file=sys.stderr,
    )
    return 1


def make_parser(subparsers=None, prog: str | None = None):
    """The `TrlParser` of (BabyScriptArguments, BabyDPOConfig, ModelConfig), or a `trl` CLI subcommand."""
    from trl import ModelConfig, TrlParser

    dataclass_types = (BabyScriptArguments, BabyDPOConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("dpo", help="DPO-train a baby", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)


def parse_args(argv: list[str] | None = None, prog: str = "train_dpo.py"):
    """Parse defaults < YAML --config < CLI flags into (BabyScriptArguments, BabyDPOConfig, ModelConfig).

    Args:
        argv: the arguments (default: `sys.argv[1:]`).
        prog: the program name in usage and error messages.

    Returns:
        The three parsed dataclasses.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or not os.path.isfile(argv[i + 1]):
            what = argv[i + 1] if i + 1 < len(argv) else "(missing)"
            raise BabyhubError(f"--config {what}: no such file; pass a recipe such as recipes/tiny-cpu.yaml.")
    try:
        script_args, training_args, model_args = make_parser(prog=prog).parse_args_and_config(argv)
    except ValueError as err:  # checks in __post_init__ and unknown YAML keys
        raise BabyhubError(str(err)) from err
    if not model_args.model_name_or_path:
        raise BabyhubError("--model_name_or_path is required: a baby folder (`babyhub baby bootstrap`) or a Hub id.")
    return script_args, training_args, model_args


def run(argv: list[str] | None = None, prog: str = "train_dpo.py") -> int:
    """`python train_dpo.py ARGS` and `babyhub train ARGS`.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).
        prog: the program name in usage and error messages.

    Returns:
        The exit code: 0, or 1 when a push failed for good (the files stay in the output folder).
    """
    script_args, training_args, model_args = parse_args(argv, prog)
    return main(script_args, training_args, model_args)


if __name__ == "__main__":
    from hub_tools.distributed import exit_process
    from hub_tools.training.processes import PeerFailed

    try:
        code = run()
    except PeerFailed as err:  # another process failed first and printed why: stop with its exit code
        code = err.exit_code
    except BabyhubError as err:
        print(f"train_dpo.py: error: {err}", file=sys.stderr)
        code = err.exit_code
    exit_process(code)  # under a launcher: past the C++ teardown that can abort a finished process
