"""Bootstrap a baby: a byte-level BPE tokenizer and a small Llama trained from scratch on dialogue text.

The real base model (`bbunzeck/another-llama`) cannot be downloaded offline, so the toolkit makes a baby
of its own from the text of the DPO *training* split, in the one text convention of `hub_tools.dialogue`:
`*MOT: what is that ? *CHI: it looks like a gun .`. Each row gives two texts:

- the caregiver turn joined with the child's real answer (the dialogue as it happened), and
- the rejected child turn alone: it is a real child utterance, but it answers another prompt, so pairing it
  with this prompt would teach the baby the very mismatch DPO is meant to penalise.

Texts are wrapped in BOS/EOS and packed into fixed-length blocks (no padding, so every token trains).
The training loop is a plain PyTorch loop: for a 1 M-parameter model the Trainer's machinery costs more
than the model.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from hub_tools.dialogue import join_turns
from hub_tools.errors import BabyhubError
from hub_tools.paths import MODEL_CARDS, require_dir

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
# Order fixes the ids: pad=0, bos=1, eos=2 (the Llama convention for bos/eos).
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]


@dataclass(frozen=True)
class BabySize:
    """Architecture and optimisation settings of one baby size."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    block_size: int
    batch_size: int
    learning_rate: float
    epochs: float


# One row a size; the values in the order of BabySize's fields: vocab_size, hidden_size, num_hidden_layers,
# num_attention_heads, intermediate_size, block_size, batch_size, learning_rate, epochs.
SIZES = {
    # ≈1 M parameters with a full vocabulary: a few minutes on 2 CPU cores for the whole training split.
    "tiny": BabySize(2048, 128, 4, 4, 384, 128, 32, 3e-3, 3),
    # ≈25 M parameters: for a GPU.
    "small": BabySize(8192, 512, 8, 8, 1408, 256, 64, 1e-3, 10),
}


@dataclass
class BootstrapReport:
    """What the bootstrap did; rendered into the model card."""

    size: str
    corpus: str
    rows: int
    texts: int
    corpus_tokens: int
    steps: int
    tokens_seen: int
    final_loss: float
    parameters: int
    vocab_size: int
    seconds: float
    seed: int


def read_bootstrap_texts(train_dir: str | Path) -> tuple[list[str], int]:
    """The bootstrap corpus of a preference dataset folder (or Hub id): texts and the number of rows read.

    Only the `train` split is read: evaluation rows must never reach the baby.
    """
    from hub_tools.data.preferences import read_preferences

    source = str(train_dir)
    train = read_preferences(source)
    texts = []
    for i, row in enumerate(train):
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(row[field], str) or not row[field].strip():
                raise BabyhubError(f"{source}: train row {i} has an empty `{field}`; rebuild the dataset.")
        texts.append(join_turns(row["prompt"], row["chosen"]))
        texts.append(row["rejected"].strip())
    if not texts:
        raise BabyhubError(f"{source}: the train split is empty.")
    return texts, len(train)


def build_tokenizer(texts: Iterable[str], vocab_size: int, *, model_max_length: int = 1024):
    """Train a byte-level BPE tokenizer with BOS/EOS/PAD; it adds BOS in front of every text it encodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Byte level: any text encodes (no unknown token); no prefix space, so "*MOT:" at the start and " *CHI:"
    # after a turn separator tokenize as in the DPO concatenation prompt + " " + answer.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B", special_tokens=[(BOS_TOKEN, bos_id)]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
    )


def pack_blocks(texts: list[str], tokenizer, block_size: int):
    """Encode texts as BOS ... EOS, concatenate them and cut the stream into (n, block_size) blocks."""
    import torch

    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    stream = [t for ids in encoded for t in (*ids, tokenizer.eos_token_id)]
    n = len(stream) // block_size
    if n == 0:
        raise BabyhubError(
            f"the corpus has {len(stream)} tokens, fewer than one block of {block_size}: use more training rows."
        )
    return torch.tensor(stream[: n * block_size]).view(n, block_size), len(stream)


def build_model(size: BabySize, tokenizer, *, seed: int = 0):
    """A freshly initialised LlamaForCausalLM sized for `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads,
        max_position_embeddings=max(size.block_size, 512),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def train_causal_lm(model, blocks, size: BabySize, *, max_steps: int | None, seed: int, device: str, progress=True):
    """Train with next-token loss on packed blocks; returns (steps, tokens_seen, final_loss)."""
    import torch
    from tqdm.auto import tqdm

    n = blocks.shape[0]
    batch_size = min(size.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    steps = max_steps if max_steps is not None else max(1, round(size.epochs * steps_per_epoch))
    warmup = max(1, steps // 20)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=size.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up then cosine decay to 10 %
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    cursor, tokens_seen, ema = 0, 0, None
    bar = tqdm(range(steps), desc="bootstrap baby", unit="step", disable=not progress)
    for _ in bar:
        if cursor + batch_size > n:  # new epoch: reshuffle
            order, cursor = torch.randperm(n, generator=generator), 0
        batch = blocks[order[cursor : cursor + batch_size]].to(device)
        cursor += batch_size
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += batch.numel()
        # The final loss reported is a moving average: one batch is too noisy to describe the model.
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}")
    model.eval()
    return steps, tokens_seen, float(ema)


def render_baby_card(report: BootstrapReport, model, *, dataset_id: str | None = None):
    """The baby's model card (model_cards/baby.md)."""
    import torch
    import transformers
    from huggingface_hub import ModelCard, ModelCardData

    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["babylm", "childes", "llama", "babyhub"],
        datasets=[dataset_id] if dataset_id else None,
    )
    template = require_dir(MODEL_CARDS) / "baby.md"
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        report=asdict(report),
        architecture=model.config.to_dict(),
        dataset_id=dataset_id,
        versions={
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )


def bootstrap_baby(
    train_dir: str | Path,
    out_dir: str | Path,
    *,
    size: str = "tiny",
    max_steps: int | None = None,
    seed: int = 0,
    dataset_id: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train a tokenizer and a baby Llama on the training split of `train_dir`; save an HF folder at `out_dir`.

    The folder is written beside `out_dir` and renamed into place: a failure never leaves half a model.

    Args:
        train_dir: a preference dataset folder (`babyhub data build`) or its Hub id; only `train` is read.
        out_dir: the model folder to create (it must not exist, or be empty).
        size: a key of `SIZES` (`tiny` ≈1 M parameters for a CPU, `small` ≈25 M for a GPU).
        max_steps: optimizer steps, overriding the size's epoch budget (tests use a few dozen).
        seed: seeds the weights' initialisation and the order of the blocks.
        dataset_id: the dataset's Hub id, named in the card's metadata.
        device: where to train (default: CUDA when available, else the CPU).
        progress: show a progress bar.

    Returns:
        `out_dir`, holding the model, the tokenizer and the card (`README.md`).
    """
    import torch

    if size not in SIZES:
        raise BabyhubError(f"unknown baby size {size!r}: choose one of {sorted(SIZES)}.")
    if max_steps is not None and max_steps < 1:
        raise BabyhubError(f"max_steps must be at least 1, got {max_steps}.")
    spec = SIZES[size]
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise BabyhubError(f"{out} exists and is not empty: choose a new folder for the baby, or remove it.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()

    # Read the training split only and build the corpus in the shared dialogue convention.
    texts, rows = read_bootstrap_texts(train_dir)
    # Train the tokenizer, then pack the corpus into blocks.
    tokenizer = build_tokenizer(texts, spec.vocab_size)
    blocks, corpus_tokens = pack_blocks(texts, tokenizer, spec.block_size)
    # Train the model from scratch with next-token loss.
    model = build_model(spec, tokenizer, seed=seed)
    steps, tokens_seen, final_loss = train_causal_lm(
        model, blocks, spec, max_steps=max_steps, seed=seed, device=device, progress=progress
    )
    report = BootstrapReport(
        size=size,
        corpus=str(dataset_id or Path(str(train_dir)).name),
        rows=rows,
        texts=len(texts),
        corpus_tokens=corpus_tokens,
        steps=steps,
        tokens_seen=tokens_seen,
        final_loss=round(final_loss, 4),
        parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer),
        seconds=round(time.perf_counter() - start, 1),
        seed=seed,
    )
    # Save into a temporary sibling and rename, so a failure never leaves a half-written model folder.
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.to("cpu").save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    render_baby_card(report, model, dataset_id=dataset_id).save(tmp / "README.md")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
