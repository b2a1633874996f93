"""The arguments of `train_dpo.py`: TRL's, plus babyhub's own, every field declared with its help.

`train_dpo.py` parses them with `TrlParser` (defaults < YAML `--config` < flags). A field is a flag and a YAML key
at once, so the checks below, which run when the dataclass is built (before any model or data loads), name the
field the way the user wrote it.

The subclasses have their own names (`BabyScriptArguments`, `BabyDPOConfig`), so that reading a traceback or an
import never leaves a doubt about whose `DPOConfig` is meant.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import trl

from hub_tools.repos import InvalidName, check_repo_id
from hub_tools.training.checks import TOKENIZATIONS

# The training settings a card states (a whitelist: a card must never carry a token or a local secret).
CARD_CONFIG_KEYS = [
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "beta", "loss_type", "max_length", "truncation_mode", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
    "weight_decay", "max_grad_norm", "optim", "seed", "logging_steps", "save_steps", "bf16", "fp16",
    "gradient_checkpointing", "precompute_ref_log_probs", "disable_dropout",
]  # fmt: skip


@dataclass
class BabyScriptArguments(trl.ScriptArguments):
    """TRL's script arguments plus the dataset revisions, the checkpoint evaluation set and babyhub's fast paths."""

    dataset_revision: str | None = field(default=None, metadata={"help": "Revision of --dataset_name on the Hub."})
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Dialogue min-pair evaluation dataset (folder or Hub id) scored at every checkpoint."},
    )
    eval_dataset_revision: str | None = field(default=None, metadata={"help": "Revision of --eval_dataset_name."})
    eval_dataset_split: str = field(default="train", metadata={"help": "Split of --eval_dataset_name to score."})
    eval_max_pairs: int | None = field(
        default=None, metadata={"help": "Score only the first N evaluation pairs at each checkpoint."}
    )
    metrics_file: str = field(
        default="logs/training_metrics.csv",
        metadata={"help": "Where every log row goes (relative paths are inside --output_dir)."},
    )
    fuse_gradient_accumulation: bool = field(
        default=False,
        metadata={
            "help": "Run batch x accumulation as one micro-batch (the same DPO loss and gradient, fewer passes); "
            "for CPUs and GPUs with memory to spare."
        },
    )
    pack_pairs: bool = field(
        default=False,
        metadata={
            "help": "Run each pair as one packed prompt + chosen + rejected (the prompt once, no padding) and score "
            "only the answer tokens: the same log-probs and DPO loss up to float rounding, fewer tokens per step."
        },
    )

    tokenization: str = field(
        default="babyhub",
        metadata={
            "help": "How training sequences are tokenized. babyhub: BOS + prompt + ' ' + answer + EOS, tokenized as "
            "one text (the sequence `babyhub eval` scores). trl-0.19: exactly TRL 0.19.1's sequences, as the "
            "original study trained on: prompt, chosen and rejected tokenized separately without special tokens "
            "(no BOS), EOS after each answer, prompt and answer joined with no separator.",
            "choices": list(TOKENIZATIONS),
        },
    )

    def __post_init__(self):
        if self.tokenization not in TOKENIZATIONS:
            raise ValueError(f"--tokenization must be one of {', '.join(TOKENIZATIONS)}, got {self.tokenization!r}.")
        if not self.dataset_name:
            raise ValueError(
                "--dataset_name is required: a preference dataset folder built by `babyhub data build` "
                "(e.g. out/data/child-dpo-preferences) or its Hub id."
            )
        if self.eval_max_pairs is not None and self.eval_max_pairs < 1:
            raise ValueError(f"--eval_max_pairs must be at least 1, got {self.eval_max_pairs}.")


@dataclass
class BabyDPOConfig(trl.DPOConfig):
    """TRL's DPOConfig, made safe for a CPU, with `--push_to_hub` meaning babyhub's checkpoint pushing.

    The Trainer's own pushing (`hub_strategy`) pushes every checkpoint to one branch and skips a push while
    another runs; babyhub pushes each checkpoint to its own branch from a queue that never skips one. So the
    user's `--push_to_hub` is moved to `push_checkpoints` and the Trainer's switch is turned off before the
    Trainer can act on it.
    """

    push_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "Push every checkpoint to its branch checkpoint-<step> and the final model to main of "
            "--hub_model_id, from babyhub's background queue. --push_to_hub sets it (the Trainer's own pushing "
            "stays off)."
        },
    )

    def __post_init__(self):
        import torch

        self.push_checkpoints = bool(self.push_checkpoints or self.push_to_hub)
        self.push_to_hub = False
        if self.push_checkpoints and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id NAMESPACE/NAME (the model repo to push to).")
        if self.hub_model_id:
            try:  # the grammar the Hub (and the local hub) enforces, checked before hours of training
                check_repo_id(self.hub_model_id)
            except InvalidName as err:
                raise ValueError(f"--hub_model_id: {err}.") from err
        if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            # TRL defaults to bf16 and gradient checkpointing, both several times slower on a CPU.
            self.bf16 = False
            self.fp16 = False
            self.gradient_checkpointing = False
            if hasattr(self, "activation_checkpointing"):  # transformers >= 5.2x: the new name wins
                self.activation_checkpointing = False
            self.dataloader_pin_memory = False  # pinned memory only speeds copies to an accelerator
            # Under torchrun, accelerate starts a gloo process group (MULTI_CPU) only when told the run is on CPUs;
            # without it each process would train the whole data set on its own.
            self.use_cpu = True
        if self.padding_free:
            raise ValueError("padding_free is disabled in TRL's DPOTrainer for now: remove --padding_free.")
        if self.save_strategy == "steps" and isinstance(self.save_steps, float) and 0 < self.save_steps < 1:
            raise ValueError("--save_steps must be a whole number of steps: checkpoint branches are named by step.")
        if self.push_checkpoints:
            check_saves_full_weights(os.environ)
        self.report_to = self.report_to or "none"
        super().__post_init__()

    def card_config(self) -> dict:
        """The training settings a model card states: the whitelist above, enums as their plain values."""
        config = {k: getattr(self, k) for k in CARD_CONFIG_KEYS if hasattr(self, k)}
        config = {k: getattr(v, "value", v) for k, v in config.items()}
        config["loss_type"] = list(config.get("loss_type") or [])
        return config


def fuse_gradient_accumulation(training_args: BabyDPOConfig) -> None:
    """Run batch x accumulation as one micro-batch of the product, in place.

    The mean of equal-size micro-batch means is the mean over the fused batch: the same loss and gradient, one
    pass instead of several (a CPU gains most, having no memory limit worth the extra passes).
    """
    if training_args.gradient_accumulation_steps > 1:
        training_args.per_device_train_batch_size *= training_args.gradient_accumulation_steps
        training_args.gradient_accumulation_steps = 1


def check_saves_full_weights(environ: Mapping[str, str]) -> None:
    """Refuse a launch whose checkpoints would hold no full model weights to push, before anything trains.

    `accelerate launch` passes its config to the processes in the environment. DeepSpeed ZeRO-3 writes the model
    weights of a checkpoint only when they are gathered to 16 bits (`zero3_save_16bit_model`), and FSDP writes them
    as one file only with a full state dict; otherwise a checkpoint holds shards that only the same launch can read.

    Args:
        environ: the process environment (`os.environ`).

    Raises:
        ValueError: ZeRO-3 without `zero3_save_16bit_model`, or FSDP with a sharded state dict.
    """
    zero3 = environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" and environ.get("ACCELERATE_USE_DEEPSPEED") == "true"
    if zero3 and environ.get("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", "").lower() != "true":
        raise ValueError(
            "--push_to_hub under DeepSpeed ZeRO-3 needs the full weights gathered at every save: set "
            "`zero3_save_16bit_model: true` in the accelerate config (recipes/accelerate/deepspeed_zero3.yaml does)."
        )
    fsdp = environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    # accelerate's default: a full state dict under FSDP 1, a sharded one under FSDP 2
    default = "FULL_STATE_DICT" if environ.get("FSDP_VERSION", "1") == "1" else "SHARDED_STATE_DICT"
    state_dict_type = (environ.get("FSDP_STATE_DICT_TYPE") or default).upper()
    if fsdp and state_dict_type not in ("FULL_STATE_DICT", "1"):
        raise ValueError(
            f"--push_to_hub under FSDP needs the full weights at every save, not {state_dict_type}: set "
            "`fsdp_state_dict_type: FULL_STATE_DICT` in the accelerate config (as recipes/accelerate/fsdp.yaml does)."
        )


def optimizer_steps_per_epoch(rows: int, *, processes: int, batch: int, accumulation: int) -> int:
    """The optimizer steps of one epoch over `rows` pairs, counted as the Trainer counts them.

    Each process's data loader holds ceil(ceil(rows / batch) / processes) batches (accelerate gives every process
    the same number; the last batch may be short), and a step takes `accumulation` of them, the last step of an
    epoch what is left. The original study: 18,000 pairs, 2 processes x 4 x 4 -> 2,250 batches a process -> 563
    steps (562 of 32 pairs and one of 16); one process x 4 x 8 gives the same 563.

    Args:
        rows: training pairs.
        processes: data-parallel processes.
        batch: `per_device_train_batch_size`.
        accumulation: `gradient_accumulation_steps`.

    Returns:
        Optimizer steps per epoch.
    """
    batches = math.ceil(math.ceil(rows / batch) / processes)
    return max(math.ceil(batches / accumulation), 1)
