"""The packed-pairs DPO trainer: TRL's `DPOTrainer`, each pair's prompt run once and only answer tokens scored.

TRL runs a DPO batch as 2B right-padded rows (B prompt + chosen, then B prompt + rejected) and scores every
position. `pack_pairs` lays each pair out once as prompt + chosen + rejected in a packed row, with a 4D attention
mask so that each answer sees its own prompt and itself only: the same log-probs (and so the same DPO loss and
gradient) up to float rounding, about a third fewer tokens through the model, no padding. `add_packed_lm_head`
puts it behind TRL's fused LM head, so the rest of TRL's trainer is untouched. Under DDP each process packs its own
shard of the batch (the reference log-probs precomputed by TRL are gathered across processes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import trl

from hub_tools.branches import checkpoint_step

logger = logging.getLogger(__name__)


def load_model(name: str, revision: str | None = None, dtype=None):
    """The causal LM to train, in fp32 on a CPU unless a dtype is asked for (bf16 is emulated there, and slower).

    Args:
        name: a model folder or a Hub model id.
        revision: its Hub revision.
        dtype: `ModelConfig.dtype` (None or "auto": the checkpoint's own dtype on a GPU, fp32 on a CPU).

    Returns:
        The model, as `AutoModelForCausalLM.from_pretrained` loads it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype if dtype not in (None, "auto") else None
    if dtype is None and not torch.cuda.is_available():
        dtype = torch.float32
    return AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype)


def save_final_model(trainer: trl.DPOTrainer, card, metrics_csv: Path, known_branches=()) -> int:
    """Save the trained model in the output folder with its step, its curves and its `main` card.

    `trainer_state.json` goes beside the model so that `babyhub eval` places `main` at its step among the
    checkpoint branches. Every process of a run calls it (DeepSpeed ZeRO-3 and FSDP gather the weights from all
    of them); only the main process writes.

    Args:
        trainer: the trainer, after `train()`.
        card: the run's `hub_tools.training.card.RunCard`.
        metrics_csv: the run's metrics CSV (curves are drawn when it exists).
        known_branches: checkpoint branches on the Hub that the card links besides the local checkpoint folders.

    Returns:
        The final step.
    """
    from hub_tools.evaluation.plots import plot_metrics
    from hub_tools.training.metrics import metrics_at

    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))  # a collective under ZeRO-3 and FSDP; written by the main process
    if not trainer.is_world_process_zero():
        return trainer.state.global_step
    trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    plots = []
    if metrics_csv.is_file():
        plots = [str(p.relative_to(output_dir)) for p in plot_metrics([metrics_csv], output_dir / "plots")]
    step = trainer.state.global_step
    local = {p.name for p in output_dir.glob("checkpoint-*") if checkpoint_step(p.name) is not None}
    card.write(
        output_dir,
        revision="main",
        step=step,
        epoch=trainer.state.epoch,
        metrics=metrics_at(trainer.state.log_history, step),
        branches=sorted(set(known_branches) | local, key=checkpoint_step),
        plots=plots,
    )
    return step


def trainer_class(pack: bool) -> type[trl.DPOTrainer]:
    """`PackedPairsDPOTrainer` with `--pack_pairs`, `BabyDPOTrainer` (TRL's, taking pre-tokenized data) without."""
    return PackedPairsDPOTrainer if pack else BabyDPOTrainer


class BabyDPOTrainer(trl.DPOTrainer):
    """TRL's DPOTrainer, which also trains on pairs tokenized beforehand (`--tokenization trl-0.19`).

    TRL tokenizes prompt and prompt + answer as whole texts. A dataset that already has TRL's token columns
    (`prompt_ids`, `chosen_ids`, `rejected_ids`, made by `checks.tokenize_like_trl_0_19`, which also drops what
    `max_length` would) is passed through untouched, so the collator concatenates exactly those sequences.
    """

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(dataset.column_names or ()):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


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
        metrics = {}  # the outputs asked for; the others stay None, as in TRL's head
        with torch.no_grad():  # metrics and WPO weights only, never differentiated
            if "entropy" in outputs:
                metrics["entropy"] = spread(-(log_softmax.exp() * log_softmax).sum(-1))
            if "log_sum_sq_probs" in outputs:
                metrics["log_sum_sq_probs"] = spread(torch.logsumexp(2 * log_softmax, -1))
            if "mean_logits" in outputs:
                metrics["mean_logits"] = spread(logits.mean(-1))
            if "is_top1" in outputs:
                metrics["is_top1"] = spread(logits.argmax(-1) == targets)  # argmax: the first maximum, as TRL's
        label_mask = labels[:, 1:] != -100
        loss = -log_probs.sum() / label_mask.sum().clamp(min=1)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, label_mask=label_mask, **metrics)

    model.forward = types.MethodType(forward, model)


class PackedPairsDPOTrainer(BabyDPOTrainer):
    """`BabyDPOTrainer` with `add_packed_lm_head` on the policy and the reference, before any reference pass."""

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._pack()  # runs inside DPOTrainer.__init__, after TRL added its fused head
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _pack(self):
        from accelerate.utils import is_peft_model
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if is_peft_model(self.model):
            return  # PEFT wraps the forward TRL patched (and serves as its own reference): keep TRL's head
        if self.is_fsdp_enabled or is_deepspeed_zero3_enabled():
            # The packed head reads the LM head's weight outside the head's forward: sharded under FSDP and ZeRO-3,
            # where TRL's head gathers it. DDP and ZeRO-1/2 keep whole weights on every process: packed there.
            logger.warning("--pack_pairs: sharded weights (FSDP or ZeRO-3): TRL's fused head runs instead.")
            return
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
