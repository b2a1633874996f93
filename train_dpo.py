"""DPO fine-tuning of a baby language model, every checkpoint on the Hub with its own card.

Shaped like TRL's `trl/scripts/dpo.py`: dataclass arguments parsed by `TrlParser` (defaults < YAML
`--config` < CLI flags) with TRL's standard names. `babyhub train ...` runs the same thing.

# Offline: the bootstrapped tiny baby on the CPU, pushing to the local hub (`babyhub hub serve`)
```bash
python train_dpo.py --config recipes/tiny-cpu.yaml \
    --model_name_or_path out/baby-llama \
    --dataset_name out/data/child-dpo-preferences \
    --eval_dataset_name out/data/child-dpo-preferences-eval \
    --output_dir out/baby-dpo \
    --push_to_hub --hub_model_id me/baby-dpo
```

# The original experiment (GPU): real and synthetic preferences
```bash
python train_dpo.py --config recipes/dpo-real.yaml --hub_model_id me/another-llama-dpo-real --push_to_hub
python train_dpo.py --config recipes/dpo-synthetic.yaml --hub_model_id me/another-llama-dpo-synthetic --push_to_hub
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
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.hubenv import configure_for_endpoint

# Local-hub client settings must be in the environment before TRL imports huggingface_hub.
configure_for_endpoint()

import trl  # noqa: E402

from hub_tools.branches import checkpoint_step  # noqa: E402
from hub_tools.checkpoints import hub_checkpoint_branches  # noqa: E402
from hub_tools.dialogue import TURN_SEPARATOR  # noqa: E402
from hub_tools.errors import BabyhubError  # noqa: E402
from hub_tools.preferences import read_preferences  # noqa: E402

HUB_CHECKPOINT = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)@(?P<branch>checkpoint-(?P<step>\d+))$")
# The training settings a card states (a whitelist: a card must never carry a token or a local secret).
CARD_CONFIG_KEYS = [
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "beta", "loss_type", "max_length", "truncation_mode", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
    "weight_decay", "max_grad_norm", "optim", "seed", "logging_steps", "save_steps", "bf16", "fp16",
    "gradient_checkpointing", "precompute_ref_log_probs", "disable_dropout",
]  # fmt: skip


@dataclass
class ScriptArguments(trl.ScriptArguments):
    """TRL's script arguments plus the revisions and the checkpoint evaluation set."""

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

    def __post_init__(self):
        if not self.dataset_name:
            raise ValueError(
                "--dataset_name is required: a preference dataset folder built by `babyhub data build` "
                "(e.g. out/data/child-dpo-preferences) or its Hub id."
            )
        if self.eval_max_pairs is not None and self.eval_max_pairs < 1:
            raise ValueError(f"--eval_max_pairs must be at least 1, got {self.eval_max_pairs}.")


@dataclass
class DPOConfig(trl.DPOConfig):
    """TRL's DPOConfig, made safe for a CPU and with `--push_to_hub` meaning babyhub's checkpoint pushing."""

    def __post_init__(self):
        import torch

        # Our pusher replaces the Trainer's: keep the user's switch, switch the Trainer's off before it acts on it.
        self.push_checkpoints = bool(self.push_to_hub)
        self.push_to_hub = False
        if self.push_checkpoints and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id NAMESPACE/NAME (the model repo to push to).")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            raise ValueError(f"--hub_model_id must be NAMESPACE/NAME, got {self.hub_model_id!r}.")
        if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            # TRL defaults to bf16 and gradient checkpointing, both several times slower on a CPU.
            self.bf16 = False
            self.fp16 = False
            self.gradient_checkpointing = False
            if hasattr(self, "activation_checkpointing"):  # transformers >= 5.2x: the new name wins
                self.activation_checkpointing = False
        if self.padding_free:
            raise ValueError("padding_free is disabled in TRL's DPOTrainer for now: remove --padding_free.")
        if self.save_strategy == "steps" and isinstance(self.save_steps, float) and 0 < self.save_steps < 1:
            raise ValueError("--save_steps must be a whole number of steps: checkpoint branches are named by step.")
        self.report_to = self.report_to or "none"
        super().__post_init__()


def make_parser(subparsers=None, prog: str | None = None):
    from trl import ModelConfig, TrlParser

    dataclass_types = (ScriptArguments, DPOConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("dpo", help="DPO-train a baby", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)


# ------------------------------------------------------------------------------------------------ data checks
@dataclass
class DataReport:
    """What the checks found in the training data."""

    rows: int
    dropped_by_max_length: int
    truncated_by_max_length: int
    kept: int


def with_turn_separator(dataset):
    """Put TURN_SEPARATOR in front of each answer: TRL concatenates prompt + answer as they are."""

    def add(row):
        return {k: row[k] if row[k][:1].isspace() else TURN_SEPARATOR + row[k] for k in ("chosen", "rejected")}

    return dataset.map(add, desc="Joining turns")


def check_tokenizer(tokenizer, name: str) -> None:
    """EOS ends every answer and PAD fills batches: both must exist and differ from each other."""
    if tokenizer.eos_token is None:
        raise BabyhubError(
            f"the tokenizer of {name} has no EOS token: DPO appends EOS to every answer. Set one (e.g. "
            "tokenizer.eos_token = '</s>') and save it, or bootstrap a baby with `babyhub baby bootstrap`."
        )
    if tokenizer.pad_token is None:
        # A pad equal to EOS is safe for DPO (padding is masked), but say so: generation configs may differ.
        print(f"train_dpo: the tokenizer of {name} has no PAD token; using EOS ({tokenizer.eos_token!r}) as PAD.")
        tokenizer.pad_token = tokenizer.eos_token


def check_tokenization(dataset, tokenizer, max_length: int | None) -> tuple[object, DataReport]:
    """Check that the prompt's tokens are a prefix of prompt+answer; drop (and count) what max_length would drop.

    TRL drops an example whose prompt alone reaches max_length, silently: we drop it here and say how many.
    """
    prompt_texts = list(dataset["prompt"])
    prompts = tokenizer(prompt_texts)["input_ids"]
    keep = [max_length is None or len(p) < max_length for p in prompts]
    bad, truncated = [], set()
    for answer_field in ("chosen", "rejected"):
        texts = [p + a + tokenizer.eos_token for p, a in zip(prompt_texts, list(dataset[answer_field]), strict=True)]
        for i, (p, full) in enumerate(zip(prompts, tokenizer(texts)["input_ids"], strict=True)):
            if full[: len(p)] != p:
                bad.append((i, answer_field))
            if max_length is not None and keep[i] and len(full) > max_length:
                truncated.add(i)
    if bad:
        i, answer_field = bad[0]
        raise BabyhubError(
            f"{len(bad)} example(s) tokenize the prompt differently alone than followed by the answer (first: row "
            f"{i}, {answer_field}: {dataset[i]['prompt']!r} + {dataset[i][answer_field]!r}). DPO would train on a "
            "prompt the model never sees; end prompts on a token boundary (the answers start with a space) or use a "
            "tokenizer that does not merge across it."
        )
    dropped = keep.count(False)
    kept = dataset.select([i for i, k in enumerate(keep) if k]) if dropped else dataset
    report = DataReport(
        rows=len(dataset), dropped_by_max_length=dropped, truncated_by_max_length=len(truncated), kept=len(kept)
    )
    return kept, report


# ------------------------------------------------------------------------------------ packed pairs (pack_pairs)
def pack_pairs(input_ids, attention_mask, labels):
    """Lay out a DPO batch (rows 0..B-1 chosen, B..2B-1 rejected, right-padded) as packed prompt+chosen+rejected units.

    Returns (ids, position_ids, mask, source, rows, cols) or None when the batch is not of that shape: `mask` is the
    4D boolean attention mask (a token sees its own unit's prompt and its own answer, causally), and `source[k]` is the
    packed (flat) position whose hidden state predicts the label at `(rows[k], cols[k] + 1)` of the original batch.
    """
    import torch

    n_rows, width = input_ids.shape
    if n_rows % 2 or attention_mask is None or attention_mask.dim() != 2:
        return None
    lengths = attention_mask.sum(1)
    right_padded = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    if not torch.equal(attention_mask.bool(), right_padded) or bool(((labels != -100) & ~right_padded).any()):
        return None  # not right-padded rows with labels on real tokens only
    lengths, is_label, ids = lengths.tolist(), (labels != -100).tolist(), input_ids.tolist()
    pairs = n_rows // 2
    units = []  # (prompt ids, chosen answer ids, rejected answer ids, pair index)
    for i in range(pairs):
        starts = [is_label[r].index(True) if any(is_label[r]) else lengths[r] for r in (i, i + pairs)]
        if starts[0] != starts[1] or ids[i][: starts[0]] != ids[i + pairs][: starts[1]]:
            return None  # chosen and rejected must share the prompt token for token
        prompt = starts[0]
        units.append((ids[i][:prompt], ids[i][prompt : lengths[i]], ids[i + pairs][prompt : lengths[i + pairs]], i))
    # First-fit decreasing into rows: few rows, little padding.
    # Rows fit two of the longest units: fuller rows than one per row (~5% faster here), attention stays small.
    capacity = 2 * max(len(p) + len(c) + len(r) for p, c, r, _ in units)
    bins: list[list] = []
    for unit in sorted(units, key=lambda u: -(len(u[0]) + len(u[1]) + len(u[2]))):
        size = len(unit[0]) + len(unit[1]) + len(unit[2])
        for b in bins:
            if b[0] + size <= capacity:
                b[0] += size
                b[1].append(unit)
                break
        else:
            bins.append([size, [unit]])
    packed_ids = [[0] * capacity for _ in bins]
    positions = [[0] * capacity for _ in bins]
    owner = [[-1 - (r * capacity + k) for k in range(capacity)] for r in range(len(bins))]  # padding: only itself
    kind = [[3] * capacity for _ in bins]  # 0 prompt, 1 chosen, 2 rejected, 3 padding
    source, rows, cols = [], [], []
    for r, (_, members) in enumerate(bins):
        at = 0
        for prompt, chosen, rejected, i in members:
            base = r * capacity + at
            for k, part in ((0, prompt), (1, chosen), (2, rejected)):
                offset = len(prompt) if k else 0
                for j, token in enumerate(part):
                    packed_ids[r][at], positions[r][at], owner[r][at], kind[r][at] = token, offset + j, i, k
                    at += 1
                if k:
                    # Label at column t + 1 is predicted by the token at column t: the prompt's last token for the
                    # first answer token (shared by both answers), then the answer's own tokens.
                    answer_base = r * capacity + at - len(part)  # flat index of the answer's first token
                    row = i if k == 1 else i + pairs
                    for t in range(len(prompt) - 1, len(prompt) + len(part) - 1):
                        if is_label[row][t + 1]:
                            source.append(base + t if t < len(prompt) else answer_base + t - len(prompt))
                            rows.append(row)
                            cols.append(t)
    device = input_ids.device
    packed = torch.tensor(packed_ids, device=device)
    owner_t, kind_t = torch.tensor(owner, device=device), torch.tensor(kind, device=device)
    causal = torch.ones(capacity, capacity, dtype=torch.bool, device=device).tril()
    mask = (owner_t[:, :, None] == owner_t[:, None, :]) & causal
    mask &= (kind_t[:, None, :] == 0) | (kind_t[:, None, :] == kind_t[:, :, None])
    as_tensor = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return (
        packed,
        torch.tensor(positions, device=device),
        mask[:, None],
        as_tensor(source),
        as_tensor(rows),
        as_tensor(cols),
    )


def add_packed_lm_head(model, outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """Replace TRL's fused LM head of `model` (`fused_lm_head=True` calls) by one that runs packed pairs.

    TRL's head scores every position (prompt and padding too) off CUDA, recomputes the logits in its backward and
    makes extra vocabulary passes for its metrics. Here the backbone runs each pair's prompt once without padding
    (`pack_pairs`), only the answer positions go through the LM head, and the metrics come from those same small
    logits (only the `outputs` asked for, as in TRL's head). Batches of another shape, and models with scaled or
    soft-capped logits, keep TRL's head.
    """
    import types

    import torch
    import torch.nn.functional as F
    from trl.trainer.utils import FusedCausalLMOutput

    fused_forward = model.forward
    text_config = model.config.get_text_config()
    plain_logits = not any(getattr(text_config, k, None) is not None for k in (
        "final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling",
    )) and model.config._attn_implementation == "sdpa"  # fmt: skip

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        keys = set(kwargs) - {"input_ids", "attention_mask", "use_cache"}
        packed = None
        if fused_lm_head and plain_logits and not args and not keys and labels is not None:
            packed = pack_pairs(kwargs["input_ids"], kwargs.get("attention_mask"), labels)
        if packed is None:
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        ids, positions, mask, source, rows, cols = packed
        hidden = self.base_model(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=False)
        hidden = hidden.last_hidden_state.reshape(-1, hidden.last_hidden_state.size(-1))[source]
        head = self.get_output_embeddings()
        logits = F.linear(hidden, head.weight, head.bias).float()
        targets = labels[rows, cols + 1]
        log_softmax = logits.log_softmax(-1)
        shape = (labels.size(0), labels.size(1) - 1)

        def spread(values):  # per answer token -> (batch, seq_len - 1), zero elsewhere, as TRL's head returns
            return values.new_zeros(shape).index_put((rows, cols), values)

        log_probs = spread(log_softmax.gather(-1, targets[:, None])[:, 0])
        entropy = log_sum_sq_probs = mean_logits = is_top1 = None
        with torch.no_grad():  # metrics and WPO weights only, never differentiated
            if "entropy" in outputs:
                entropy = spread(-(log_softmax.exp() * log_softmax).sum(-1))
            if "log_sum_sq_probs" in outputs:
                log_sum_sq_probs = spread(torch.logsumexp(2 * log_softmax, -1))
            if "mean_logits" in outputs:
                mean_logits = spread(logits.mean(-1))
            if "is_top1" in outputs:
                is_top1 = spread(logits.argmax(-1) == targets)  # argmax: the first maximum, as TRL's head
        label_mask = labels[:, 1:] != -100
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / label_mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=entropy,
            log_sum_sq_probs=log_sum_sq_probs,
            mean_logits=mean_logits,
            is_top1=is_top1,
            label_mask=label_mask,
        )

    model.forward = types.MethodType(forward, model)


class PackedPairsDPOTrainer(trl.DPOTrainer):
    """TRL's DPOTrainer with `add_packed_lm_head` on the policy and the reference, before any reference pass."""

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._pack()  # runs inside DPOTrainer.__init__, after TRL added its fused head
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _pack(self):
        from accelerate.utils import is_peft_model

        if is_peft_model(self.model):
            return  # PEFT wraps the forward TRL patched (and serves as its own reference): keep TRL's head
        # The outputs TRL's DPOTrainer asks of its fused heads: metrics (and WPO weights) on the policy only.
        policy_outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
        policy_outputs += ("log_sum_sq_probs",) if self.use_weighting else ()
        for model, outputs in ((self.model, policy_outputs), (self.ref_model, ("log_probs",))):
            if model is not None and not getattr(model, "_babyhub_packed", False):
                add_packed_lm_head(model, outputs)
                model._babyhub_packed = True

    def train(self, *args, **kwargs):
        self._pack()
        return super().train(*args, **kwargs)


# ---------------------------------------------------------------------------------------------- the run itself
@dataclass
class RunSetup:
    """What the callbacks need to know about the run."""

    script_args: ScriptArguments
    training_args: DPOConfig
    model_args: object
    eval_data: object | None = None  # hub_tools.evaluation.MinimalPairsData
    known_branches: set[str] = field(default_factory=set)

    def card_config(self) -> dict:
        args = self.training_args
        config = {k: getattr(args, k) for k in CARD_CONFIG_KEYS if hasattr(args, k)}
        config = {k: getattr(v, "value", v) for k, v in config.items()}  # enums as their plain values
        config["loss_type"] = list(config.get("loss_type") or [])
        config["dataset_name"] = self.script_args.dataset_name
        config["model_name_or_path"] = self.model_args.model_name_or_path
        return config


def metrics_at(log_history: list[dict], step: int) -> dict:
    """The last training log row at or before `step` (TRL's keys)."""
    rows = [r for r in log_history if "loss" in r and r.get("step", 0) <= step]
    return dict(rows[-1]) if rows else {}


def write_card(
    folder: Path,
    setup: RunSetup,
    *,
    revision: str,
    step: int,
    epoch: float | None,
    metrics: dict,
    branches: list[str],
    plots: list[str] | None = None,
) -> None:
    """Render the card of `revision` into folder/README.md (scoring the eval set first when configured)."""
    from huggingface_hub import constants

    from hub_tools.model_card import DatasetRef, EvalScore, TrainingCardInfo, render_training_card

    s, t = setup.script_args, setup.training_args
    eval_score = None
    if setup.eval_data is not None:
        from hub_tools.evaluation import evaluate_minpairs
        from hub_tools.scoring import Scorer

        result = evaluate_minpairs(Scorer.from_pretrained(str(folder)), setup.eval_data, progress=False)
        eval_score = EvalScore(
            dataset=DatasetRef(s.eval_dataset_name, s.eval_dataset_revision),
            accuracy=result.accuracy,
            pairs=result.n,
            ties=result.ties,
            method=result.method,
        )
    datasets_used = [DatasetRef(s.dataset_name, s.dataset_revision)]
    if s.eval_dataset_name:
        datasets_used.append(DatasetRef(s.eval_dataset_name, s.eval_dataset_revision))
    info = TrainingCardInfo(
        repo_id=t.hub_model_id or Path(t.output_dir).name,
        revision=revision,
        base_model=setup.model_args.model_name_or_path,
        base_revision=setup.model_args.model_revision,
        datasets=datasets_used,
        config=setup.card_config(),
        step=step,
        epoch=epoch,
        tokens_seen=int(metrics["num_tokens"]) if metrics.get("num_tokens") is not None else None,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        branches=branches,
        endpoint=constants.ENDPOINT,
        eval_score=eval_score,
        plots=plots or [],
        max_steps=t.max_steps if t.max_steps and t.max_steps > 0 else None,
    )
    readme = folder / "README.md"
    readme.unlink(missing_ok=True)  # never write through a hard link into the Trainer's checkpoint folder
    render_training_card(info).save(readme)


def metrics_file(setup: RunSetup) -> Path:
    """Where the log rows go: --metrics_file, relative to --output_dir unless absolute."""
    path = Path(setup.script_args.metrics_file)
    return path if path.is_absolute() else Path(setup.training_args.output_dir) / path


def make_callbacks(setup: RunSetup, pusher):
    """The metrics-CSV callback and (when pushing) the checkpoint-push callback."""
    from transformers import TrainerCallback

    from hub_tools.branches import checkpoint_branch
    from hub_tools.checkpoints import stage_checkpoint
    from hub_tools.plots import MetricsLog

    output_dir = Path(setup.training_args.output_dir)
    metrics = MetricsLog(metrics_file(setup))

    class MetricsCSV(TrainerCallback):
        """Every log row to logs/training_metrics.csv; on resume the rows up to the checkpoint come from its state."""

        def on_train_begin(self, args, state, control, **kwargs):
            metrics.update([r for r in state.log_history if r.get("step", 0) <= state.global_step])
            # Without optimizer state (a Hub branch holds none) the Trainer starts the LR schedule at 0: move it on.
            scheduler = kwargs.get("lr_scheduler")
            if state.global_step and scheduler is not None and scheduler.last_epoch < state.global_step:
                with warnings.catch_warnings():
                    # Stepping the schedule before the optimizer is the point here, not the mistake torch warns of.
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                    for _ in range(state.global_step - scheduler.last_epoch):
                        scheduler.step()

        def on_log(self, args, state, control, logs=None, **kwargs):
            metrics.update(state.log_history)

    class PushCheckpoints(TrainerCallback):
        """On every save: stage the checkpoint's model files and queue them for branch checkpoint-<step>."""

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            checkpoint = output_dir / f"checkpoint-{step}"
            staged = stage_checkpoint(checkpoint, output_dir / ".push" / checkpoint_branch(step))
            setup.known_branches.add(checkpoint_branch(step))
            branches = sorted((b for b in setup.known_branches if checkpoint_step(b) <= step), key=checkpoint_step)
            metrics, epoch = metrics_at(state.log_history, step), state.epoch

            def prepare(job):  # runs in the push thread: scoring the eval set never blocks training
                write_card(
                    job.folder,
                    setup,
                    revision=job.revision,
                    step=step,
                    epoch=epoch,
                    metrics=metrics,
                    branches=branches,
                )

            pusher.submit(step, staged, prepare=prepare)

    return [MetricsCSV()] + ([PushCheckpoints()] if pusher is not None else [])


def resolve_resume(value: str | None, output_dir: Path) -> tuple[str | None, int | None]:
    """A local checkpoint folder as is; `NS/NAME@checkpoint-N` downloaded from the Hub. Returns (path, step)."""
    if not value:
        return None, None
    if Path(value).is_dir():
        state = Path(value) / "trainer_state.json"
        if not state.is_file():
            raise BabyhubError(f"{value} has no trainer_state.json: pass a checkpoint-<step> folder of a run.")
        import json

        return value, int(json.loads(state.read_text())["global_step"])
    match = HUB_CHECKPOINT.match(value)
    if not match:
        raise BabyhubError(
            f"--resume_from_checkpoint {value!r}: not a folder, and not NAMESPACE/NAME@checkpoint-<step> on the Hub."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    target = output_dir / ".resume" / match["branch"]
    try:
        snapshot_download(match["repo"], revision=match["branch"], local_dir=target)
    except (RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError) as err:
        raise BabyhubError(f"cannot download {value} from the Hub: {err}. Check the repo id and the branch.") from err
    if not (target / "trainer_state.json").is_file():
        raise BabyhubError(f"{value} has no trainer_state.json: it was not pushed by babyhub's checkpoint queue.")
    return str(target), int(match["step"])


def main(script_args: ScriptArguments, training_args: DPOConfig, model_args) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub_tools.checkpoints import CheckpointPushQueue
    from hub_tools.plots import plot_metrics
    from hub_tools.publish import push_folder

    output_dir = Path(training_args.output_dir)
    if script_args.fuse_gradient_accumulation and training_args.gradient_accumulation_steps > 1:
        # Mean of equal-size micro-batch means == mean over the fused batch: same loss, one pass instead of several.
        training_args.per_device_train_batch_size *= training_args.gradient_accumulation_steps
        training_args.gradient_accumulation_steps = 1

    # Load the tokenizer and check the special tokens DPO relies on
    name = model_args.model_name_or_path
    if not name:
        raise BabyhubError("--model_name_or_path is required: a baby folder (`babyhub baby bootstrap`) or a Hub id.")
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision)
    check_tokenizer(tokenizer, name)

    # Load the training data, join turns with the one separator, check tokenization, count max_length drops
    train = with_turn_separator(
        read_preferences(script_args.dataset_name, script_args.dataset_revision, script_args.dataset_train_split)
    )
    train, report = check_tokenization(train, tokenizer, training_args.max_length)
    print(
        f"train_dpo: {report.rows} training examples; max_length={training_args.max_length} drops "
        f"{report.dropped_by_max_length} (prompt alone too long) and truncates {report.truncated_by_max_length}; "
        f"training on {report.kept}."
    )
    if report.kept == 0:
        raise BabyhubError(
            f"every example's prompt is at least max_length={training_args.max_length} tokens: raise --max_length."
        )
    setup = RunSetup(script_args, training_args, model_args)
    if script_args.eval_dataset_name:
        from hub_tools.evaluation import read_minpairs_data

        data = read_minpairs_data(
            script_args.eval_dataset_name,
            split=script_args.eval_dataset_split,
            revision=script_args.eval_dataset_revision,
        )
        n = script_args.eval_max_pairs or len(data.prompts)
        data.prompts, data.chosen, data.rejected = data.prompts[:n], data.chosen[:n], data.rejected[:n]
        setup.eval_data = data

    # Resume from a local checkpoint or a Hub branch; refuse to mix a fresh run into a repo with checkpoints
    resume_path, resume_step = resolve_resume(training_args.resume_from_checkpoint, output_dir)
    pusher = None
    if training_args.push_checkpoints:
        existing = hub_checkpoint_branches(training_args.hub_model_id)
        if existing and resume_step is None:
            raise BabyhubError(
                f"{training_args.hub_model_id} already has checkpoint branches ({', '.join(sorted(existing))}): "
                "resume that run with --resume_from_checkpoint NAMESPACE/NAME@checkpoint-<step>, or choose another "
                "--hub_model_id."
            )
        setup.known_branches = {b for b in existing if resume_step is not None and checkpoint_step(b) <= resume_step}
        pusher = CheckpointPushQueue(
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            overwrite_after=resume_step,
            remove_after_push=True,
        )

    # Load the model in fp32 on a CPU (bf16 is emulated there and slower)
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else None
    if dtype is None and not torch.cuda.is_available():
        dtype = torch.float32
    model = AutoModelForCausalLM.from_pretrained(name, revision=model_args.model_revision, dtype=dtype)

    # Train
    trainer_class = PackedPairsDPOTrainer if script_args.pack_pairs else trl.DPOTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=make_callbacks(setup, pusher),
    )
    trainer.train(resume_from_checkpoint=resume_path)

    # Save the final model with its curves and card
    trainer.save_model(str(output_dir))
    trainer.state.save_to_json(str(output_dir / "trainer_state.json"))  # the step of main, for `babyhub eval`
    metrics_csv = metrics_file(setup)
    plots = []
    if metrics_csv.is_file():
        plots = [str(p.relative_to(output_dir)) for p in plot_metrics([metrics_csv], output_dir / "plots")]
    step = trainer.state.global_step
    setup.known_branches |= {p.name for p in output_dir.glob("checkpoint-*") if checkpoint_step(p.name) is not None}
    branches = sorted(setup.known_branches, key=checkpoint_step)
    write_card(
        output_dir,
        setup,
        revision="main",
        step=step,
        epoch=trainer.state.epoch,
        metrics=metrics_at(trainer.state.log_history, step),
        branches=branches,
        plots=plots,
    )
    print(f"train_dpo: model saved to {output_dir} (step {step}).")
    if pusher is None:
        return 0

    # Wait for the checkpoint queue, then push the final model to main
    queue_report = pusher.close()
    failed = dict(queue_report.failed)
    try:
        result = push_folder(
            output_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            commit_message=f"Final model at step {step}",
            ignore_patterns=["checkpoint-*", ".push/*", ".resume/*", "runs/*", "*.pt", "*.pth", "training_args.bin"],
        )
        print(f"train_dpo: pushed the final model to {result.url}")
    except Exception as err:  # report with the others: the files are safe in output_dir
        failed["main"] = f"{type(err).__name__}: {err}"
    for revision in sorted(queue_report.pushed, key=checkpoint_step):
        print(f"train_dpo: pushed {training_args.hub_model_id}@{revision}")
    if failed:
        for revision, error in failed.items():
            print(f"train_dpo: FAILED to push {revision}: {error}", file=sys.stderr)
        print(
            f"train_dpo: the files are in {output_dir}; run the same command with --resume_from_checkpoint "
            "to retry the pushes.",
            file=sys.stderr,
        )
        return 1
    return 0


def parse_args(argv: list[str] | None = None, prog: str = "train_dpo.py"):
    """Parse defaults < YAML --config < CLI flags into (ScriptArguments, DPOConfig, ModelConfig)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or not os.path.isfile(argv[i + 1]):
            what = argv[i + 1] if i + 1 < len(argv) else "(missing)"
            raise BabyhubError(f"--config {what}: no such file; pass a recipe such as recipes/tiny-cpu.yaml.")
    try:
        return make_parser(prog=prog).parse_args_and_config(argv)
    except ValueError as err:  # checks in __post_init__ and unknown YAML keys
        raise BabyhubError(str(err)) from err


def run(argv: list[str] | None = None, prog: str = "train_dpo.py") -> int:
    """`python train_dpo.py ARGS` and `babyhub train ARGS`."""
    script_args, training_args, model_args = parse_args(argv, prog)
    return main(script_args, training_args, model_args)


if __name__ == "__main__":
    try:
        sys.exit(run())
    except BabyhubError as err:
        print(f"train_dpo.py: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
