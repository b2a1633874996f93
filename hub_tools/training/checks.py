"""The data a DPO run reads, and the checks that keep it from training on something else than it says.

TRL tokenizes the prompt alone and prompt + answer, trains on the answer's tokens and drops, silently, an example
whose prompt alone reaches `max_length`. These checks make each of those visible before training starts: a
tokenizer without EOS (DPO appends it to every answer), a prompt whose tokens are not a prefix of prompt + answer
(the model would be trained on a prompt it never sees), and how many examples `max_length` drops or truncates.

Errors name the dataset, row and field; `train_dpo.py` adds the flag the value came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hub_tools.dialogue import TURN_SEPARATOR
from hub_tools.errors import BabyhubError
from hub_tools.repos import is_repo_id

logger = logging.getLogger(__name__)

# How the training sequences are tokenized: babyhub's own, or exactly as TRL 0.19.1 (the original study) did.
TOKENIZATIONS = ("babyhub", "trl-0.19")


@dataclass
class DataReport:
    """What the checks found in the training data."""

    rows: int
    dropped_by_max_length: int
    truncated_by_max_length: int
    kept: int
    max_length: int | None = None

    def describe(self) -> str:
        """One line for the user: how many examples, what max_length drops and truncates, how many train."""
        return (
            f"{self.rows} training examples; max_length={self.max_length} drops {self.dropped_by_max_length} "
            f"(prompt alone too long) and truncates {self.truncated_by_max_length}; training on {self.kept}."
        )


def check_dataset_source(name: str) -> str:
    """Return `name` if it is an existing local file or folder, or a Hub id; else say what it should be.

    Checked before anything loads, so that a mistyped path fails at once, and not after a Hub round trip.
    """
    if Path(name).exists() or is_repo_id(name):
        return name
    raise BabyhubError(
        f"{name}: no such file or folder, and not a Hub dataset id (NAMESPACE/NAME); give a dataset folder built "
        "by `babyhub data build` or its Hub id."
    )


def with_turn_separator(dataset):
    """Put TURN_SEPARATOR in front of each answer: TRL concatenates prompt + answer as they are."""

    def add(row):
        return {k: row[k] if row[k][:1].isspace() else TURN_SEPARATOR + row[k] for k in ("chosen", "rejected")}

    return dataset.map(add, desc="Joining turns")


def check_tokenizer(tokenizer, name: str) -> None:
    """EOS ends every answer and PAD fills batches: both must exist (a missing PAD becomes EOS, with a warning)."""
    if tokenizer.eos_token is None:
        raise BabyhubError(
            f"the tokenizer of {name} has no EOS token: DPO appends EOS to every answer. Set one (e.g. "
            "tokenizer.eos_token = '</s>') and save it, or bootstrap a baby with `babyhub baby bootstrap`."
        )
    if tokenizer.pad_token is None:
        # A pad equal to EOS is safe for DPO (padding is masked), but say so: generation configs may differ.
        logger.warning("the tokenizer of %s has no PAD token; using EOS (%r) as PAD.", name, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(name: str, revision: str | None = None):
    """The tokenizer of a model folder or Hub id, checked for the special tokens DPO relies on.

    Args:
        name: a model folder (e.g. `babyhub baby bootstrap`'s) or a Hub model id.
        revision: the Hub revision (branch, tag or commit) to load.

    Returns:
        The tokenizer, with PAD set to EOS when it had none.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as err:  # no such folder or repo, or no tokenizer files in it
        where = name if revision in (None, "main") else f"{name}@{revision}"
        raise BabyhubError(
            f"{where}: cannot load its tokenizer ({err}); give a model folder or a Hub model id."
        ) from err
    check_tokenizer(tokenizer, name)
    return tokenizer


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
        rows=len(dataset),
        dropped_by_max_length=dropped,
        truncated_by_max_length=len(truncated),
        kept=len(kept),
        max_length=max_length,
    )
    return kept, report


def tokenize_like_trl_0_19(dataset, tokenizer, max_length: int | None) -> tuple[object, DataReport]:
    """The token sequences TRL 0.19's `DPOTrainer.tokenize_row` made for a decoder-only model (the original study's).

    Prompt, chosen and rejected are tokenized each on its own with `add_special_tokens=False` (no BOS), EOS is
    appended to each answer, and the trainer concatenates prompt + answer with nothing between them. The columns
    `prompt_ids`, `chosen_ids` and `rejected_ids` are what TRL's collator takes (`BabyDPOTrainer` passes them
    through untouched). As in `check_tokenization`, an example whose prompt alone reaches `max_length` is dropped and
    counted. (TRL 0.19 also cut prompts to their last 512 tokens and sequences to 1024; no CHILDES turn is near.)

    Args:
        dataset: prompt/chosen/rejected text, the answers as stored (no turn separator).
        tokenizer: the tokenizer of the model to train.
        max_length: TRL's `max_length`.

    Returns:
        The tokenized dataset and a `DataReport` of what `max_length` drops or truncates.
    """
    eos = [tokenizer.eos_token_id]

    def tokenize(batch):
        ids = {k: tokenizer(batch[k], add_special_tokens=False)["input_ids"] for k in ("prompt", "chosen", "rejected")}
        return {
            "prompt_ids": ids["prompt"],
            "chosen_ids": [a + eos for a in ids["chosen"]],
            "rejected_ids": [a + eos for a in ids["rejected"]],
        }

    tokenized = dataset.map(tokenize, batched=True, desc="Tokenizing as TRL 0.19")
    lengths = [
        (len(p), len(p) + max(len(c), len(r)))
        for p, c, r in zip(tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"], strict=True)
    ]
    keep = [max_length is None or prompt < max_length for prompt, _ in lengths]
    truncated = sum(max_length is not None and prompt < max_length < full for prompt, full in lengths)
    dropped = keep.count(False)
    kept = tokenized.select([i for i, k in enumerate(keep) if k]) if dropped else tokenized
    return kept, DataReport(len(dataset), dropped, truncated, len(kept), max_length)


def read_train_dataset(
    name: str,
    tokenizer,
    *,
    revision: str | None = None,
    split: str = "train",
    max_length: int | None = None,
    tokenization: str = "babyhub",
) -> tuple[object, DataReport]:
    """The training split, tokenized the way `tokenization` says, checked and cut to `max_length`.

    Args:
        name: a preference dataset folder (`babyhub data build`) or a Hub dataset id.
        tokenizer: the tokenizer of the model to train (`load_tokenizer`).
        revision: the dataset's Hub revision.
        split: the split to train on.
        max_length: TRL's `max_length`: examples whose prompt alone reaches it are dropped (and counted).
        tokenization: "babyhub" (answers joined to prompts by the one turn separator, TRL tokenizing prompt +
            answer with BOS, the sequence the evaluation scores) or "trl-0.19" (`tokenize_like_trl_0_19`).

    Returns:
        The dataset to train on and a `DataReport` of what was dropped or will be truncated.
    """
    from hub_tools.data.preferences import read_preferences

    if tokenization not in TOKENIZATIONS:
        raise BabyhubError(f"tokenization {tokenization!r}: choose one of {', '.join(TOKENIZATIONS)}.")
    rows = read_preferences(check_dataset_source(name), revision, split)
    if tokenization == "trl-0.19":
        train, report = tokenize_like_trl_0_19(rows, tokenizer, max_length)
    else:
        train, report = check_tokenization(with_turn_separator(rows), tokenizer, max_length)
    if report.kept == 0:
        raise BabyhubError(
            f"{name}: every example's prompt is at least max_length={max_length} tokens; raise max_length."
        )
    return train, report


def read_eval_pairs(name: str | None, *, revision: str | None = None, split: str = "train", max_pairs=None):
    """The dialogue minimal pairs each checkpoint's card is scored on, or None without an evaluation set.

    Args:
        name: a dataset folder or Hub dataset id with prompt/chosen/rejected (or None: no evaluation).
        revision: its Hub revision.
        split: the split to score.
        max_pairs: keep only the first N pairs (scoring runs at every checkpoint, in the push thread).

    Returns:
        A `hub_tools.evaluation.MinimalPairsData`, or None.
    """
    if not name:
        return None
    from hub_tools.evaluation import read_minpairs_data

    data = read_minpairs_data(check_dataset_source(name), split=split, revision=revision)
    n = max_pairs or len(data.prompts)
    data.prompts, data.chosen, data.rejected = data.prompts[:n], data.chosen[:n], data.rejected[:n]
    return data
