"""Log-probabilities of texts under a causal language model: the one scorer of babyhub.

Everything that compares texts by likelihood (`babyhub eval`, the `dialogue_minpairs` metric, the
chat Space, the model cards) goes through `Scorer`, so the numbers agree everywhere. The module
depends only on torch and transformers because it is shipped, as it is, beside the metric and the
chat Space (see hub_tools/spaces/bundle.py).

Scores reproduce minicons' `IncrementalLMScorer` (`sequence_score`, `conditional_score`), the scorer
of the original work, to float precision:
- a text is tokenized with the tokenizer's special tokens (a BOS if the tokenizer adds one) and the
  first token is never scored: it is the context the others are predicted from;
- `reduction="mean"` averages, `"sum"` adds the log-probabilities (natural log) of the scored tokens;
- `bow_correction=True` applies the beginning-of-word correction (Pimentel & Meister 2024, Oh &
  Schuler 2024) exactly as minicons does: a token that ends a word gains log P(next token starts a
  word), a token that follows a word end (except the first scored one) loses log P(a word starts
  here). Tokenizers without a word-start marker (no `Ġ`/`▁`) ignore it, as in minicons.
- `bow_correction="legacy"` reproduces minicons 0.3.8's correction, with which the original work scored BLiMP
  (later minicons versions changed it; the rule above is 0.3.39's). Its "loses" rule differs: every scored token
  loses log P(a word starts here) except a token that ends a word without starting one (the last piece of a word
  of several tokens), the first scored token included; its word-start tokens are the vocabulary entries that
  begin with the whole token of a space (not with its first character), without added tokens. So the two differ
  only at a piece inside a word that is neither its first nor its last (a word of three pieces or more, or a
  first word of two or more, which has no space before it) and when the first scored token starts a word.
  Checked against minicons 0.3.8 itself on all 67,000 lower-cased BLiMP pairs with two tiny babies (60 and 300
  training steps; benchmarks/bow_legacy_agreement.py): every score within 6.1e-05 and every decision the same,
  where the current correction decides 1.9 % and 6.6 % of the pairs differently (macro-averaged accuracy
  0.5270 against 0.5261 and 0.5479 against 0.5567).

Speed (why it is fast): texts are tokenized at once, run under `torch.inference_mode` in batches of
rows, and the reduction is a masked tensor sum (no Python loop over tokens). Texts that begin alike are
computed once: they are sorted by their token ids and packed as prefix trees into rows of ROW_WIDTH places
(every shared beginning once, each token attending to its ancestors in the tree through a 4-D attention
mask with explicit positions), so the two texts of a minimal pair share their prompt, pairs with the same
prompt share it too, and dialogues share their common first words: the 7,548 eval pairs (39.4 scored
tokens per pair) run 19.6 positions per pair, against 24.8 with one pair per row. The output layer and
the log-softmax are computed only at the places whose predictions are scored (without the word-start
correction a text's last token predicts nothing scored and is not run at all). A fast tokenizer's Rust
backend is called directly (its Python wrapper costs as much as the tokenizing); Python's cyclic garbage
collector is paused while scoring, and glibc keeps freed memory mapped between batches (see
`_keep_freed_memory`). With `workers=N` whole batches run on N single-threaded workers: a baby's ops are
too small to split well over threads.

Texts longer than the model's context (`config.max_position_embeddings`) are truncated from the left
with a warning: the BOS token (if any) is kept, the oldest tokens after it are dropped, and the tokens
that remain are scored (for a conditional score the prompt loses its beginning; an answer that does not
fit on its own is refused). Empty or whitespace-only texts and answers raise `ValueError`.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REDUCTIONS = ("sum", "mean")
LEGACY_BOW = "legacy"  # bow_correction=LEGACY_BOW: minicons 0.3.8's beginning-of-word correction
# Attention implementations that accept a ready 4-D mask (needed to pack several texts into one row).
_PACKABLE_ATTENTION = ("sdpa", "eager")
# Places whose logits are computed and normalised at once: a block of logits that stays in the CPU cache.
HEAD_CHUNK = 512
# Places per packed row. Texts that begin alike share their beginning in one row (a prefix tree); wider rows share
# more, but every place attends over the whole row, so attention grows with the width. On the eval pairs 64, 80,
# 96 and 112 places gave 3,440-3,530 pairs/s at 256 texts per batch (96 the best); 48 places at 128 texts, 3,130.
ROW_WIDTH = 96


# Freed memory glibc's malloc keeps per arena instead of returning it to the kernel (see `_keep_freed_memory`).
MALLOC_TOP_PAD = 64 << 20
_M_TOP_PAD = -2  # mallopt's parameter number, from glibc's malloc.h
_malloc_tuned = False


def _keep_freed_memory() -> None:
    """Have glibc keep MALLOC_TOP_PAD bytes of freed memory mapped, so each batch reuses the last batch's pages.

    A batch allocates and frees tens of MiB of activations. By default glibc gives most of it back to the kernel
    after the batch and the next batch faults it in again page by page: scoring the 7,548 eval pairs took
    470,000 page faults and 0.6 s of system time in a 2.5 s run, and 5,000 faults with this setting. It is
    process-wide, and like any mallopt setting it also stops glibc from moving its mmap threshold (PyTorch's
    CPU tuning guide swaps in jemalloc or tcmalloc for the same reasons). Other C libraries (musl, macOS) are
    left alone.
    """
    global _malloc_tuned
    if _malloc_tuned or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        ctypes.CDLL(None).mallopt(_M_TOP_PAD, MALLOC_TOP_PAD)
    except (OSError, AttributeError):
        pass
    _malloc_tuned = True


def _gc_paused(method):
    """Run `method` with Python's cyclic garbage collector paused (restored afterwards).

    Scoring makes tens of thousands of small lists (token ids) and no reference cycles, and those allocations
    trigger collections that walk every object of a process that has imported torch and transformers: one full
    collection costs about 0.14 s, 5 % of scoring the 7,548 eval pairs. Reference counting still frees everything.
    """

    @functools.wraps(method)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@dataclass(frozen=True)
class _Text:
    """One tokenized text to score: its token ids and the position of its first scored token (>= 1)."""

    ids: list[int]
    start: int


@dataclass(frozen=True)
class _WordStarts:
    """The tokens that start a word (as a mask over the vocabulary and as ids) and which correction applies."""

    is_bow: torch.Tensor
    ids: torch.Tensor
    legacy: bool


@dataclass
class _Row:
    """One row of a batch: the places of a prefix tree of texts (see `Scorer._layout`)."""

    ids: list[int]  # the token at each place
    depth: list[int]  # each place's depth in the tree: the token's position in its texts
    texts: list[int]  # the texts of the row (indices into the scored list), in sorted order
    keeps: list[int]  # per text, how many of its first tokens it shares with the text before it in the row
    offsets: list[int]  # per text, the place of its first token that is not shared


class Scorer:
    """Scores texts with a causal LM; see the module docstring for the exact definitions."""

    def __init__(self, model, tokenizer, *, device: str = "cpu", batch_size: int = 64, workers: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.device = torch.device(device)
        if self.device.type == "cpu":
            _keep_freed_memory()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        config = model.config
        self.max_length: int | None = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self.bos_id = tokenizer.bos_token_id
        # minicons pads with the EOS token when the tokenizer has no PAD; its prompt lengths skip that id.
        pad = tokenizer.pad_token_id
        self._minicons_pad_id = pad if pad is not None else tokenizer.eos_token_id
        self._filler_id = self._minicons_pad_id if self._minicons_pad_id is not None else 0
        self._packable = getattr(config, "_attn_implementation", None) in _PACKABLE_ATTENTION
        self._vocab_size = _vocab_size(model, tokenizer)
        self._word_starts: dict[bool, _WordStarts | None] = {False: self._find_word_starts(legacy=False)}
        self._fast_head = self._check_fast_head()
        self._backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None

    @classmethod
    def from_pretrained(
        cls, model_id: str, revision: str | None = None, *, device: str = "cpu", batch_size: int = 64, workers: int = 1
    ) -> Scorer:
        """Load a model and its tokenizer (a Hub id or a local folder) in float32 and wrap them."""
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=torch.float32)
        return cls(model, tokenizer, device=device, batch_size=batch_size, workers=workers)

    # ----------------------------------------------------------------------------------------- public API
    @_gc_paused
    def sequence_scores(
        self,
        texts: Sequence[str],
        *,
        reduction: str = "mean",
        bow_correction: bool | str = False,
        progress: Callable[[int], object] | None = None,
    ) -> list[float]:
        """Log-probability of each text (all tokens after the first), averaged or summed over its tokens.

        `bow_correction` is False, True (minicons' beginning-of-word correction) or "legacy" (minicons 0.3.8's).
        `progress`, if given, is called after each batch with the number of texts it scored (e.g. a tqdm's update).
        """
        _check_reduction(reduction)
        _check_bow_correction(bow_correction)
        return self._score(self._encode_texts(texts, "texts"), reduction, bow_correction, progress)

    @_gc_paused
    def conditional_scores(
        self,
        prompts: Sequence[str],
        answers: Sequence[str],
        *,
        reduction: str = "sum",
        separator: str = " ",
        bow_correction: bool | str = False,
        progress: Callable[[int], object] | None = None,
    ) -> list[float]:
        """log p(answer | prompt + separator), summed or averaged over the answer's tokens."""
        _check_reduction(reduction)
        _check_bow_correction(bow_correction)
        _check_same_length(prompts=prompts, answers=answers)
        texts = self._encode_conditional(prompts, answers, separator, "answers")
        return self._score(texts, reduction, bow_correction, progress)

    @_gc_paused
    def pair_sequence_scores(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        *,
        reduction: str = "mean",
        bow_correction: bool | str = False,
        progress: Callable[[int], object] | None = None,
    ) -> tuple[list[float], list[float]]:
        """`sequence_scores` of two aligned lists (e.g. chosen and rejected), as two lists."""
        _check_reduction(reduction)
        _check_bow_correction(bow_correction)
        _check_same_length(texts_a=texts_a, texts_b=texts_b)
        a = self._encode_texts(texts_a, "texts_a")
        b = self._encode_texts(texts_b, "texts_b")
        scores = self._score(a + b, reduction, bow_correction, progress)
        return scores[: len(a)], scores[len(a) :]

    @_gc_paused
    def pair_conditional_scores(
        self,
        prompts: Sequence[str],
        answers_a: Sequence[str],
        answers_b: Sequence[str],
        *,
        reduction: str = "sum",
        separator: str = " ",
        bow_correction: bool | str = False,
        progress: Callable[[int], object] | None = None,
    ) -> tuple[list[float], list[float]]:
        """`conditional_scores` of two answers to each prompt; the prompt is computed once per pair."""
        _check_reduction(reduction)
        _check_bow_correction(bow_correction)
        _check_same_length(prompts=prompts, answers_a=answers_a, answers_b=answers_b)
        a = self._encode_conditional(prompts, answers_a, separator, "answers_a")
        b = self._encode_conditional(prompts, answers_b, separator, "answers_b")
        scores = self._score(a + b, reduction, bow_correction, progress)
        return scores[: len(a)], scores[len(a) :]

    # ------------------------------------------------------------------------------------------ tokenizing
    def _encode_texts(self, texts: Sequence[str], field: str) -> list[_Text]:
        texts = _as_list(texts, field)
        for i, text in enumerate(texts):
            _check_text(text, f"{field}[{i}]")
        encoded = self._token_ids(texts)
        items = [_Text(ids, 1) for ids in encoded]
        return self._fit(items, field)

    def _encode_conditional(
        self, prompts: Sequence[str], answers: Sequence[str], separator: str, field: str
    ) -> list[_Text]:
        prompts, answers = _as_list(prompts, "prompts"), _as_list(answers, field)
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            _check_text(prompt, f"prompts[{i}]")
            _check_text(answer, f"{field}[{i}]")
        prompt_ids = self._token_ids(prompts)
        full = self._token_ids([p + separator + a for p, a in zip(prompts, answers, strict=True)])
        # As minicons: the answer starts after as many tokens as the prompt has on its own (PAD-id tokens
        # aside), so the prompt's own tokenization decides where scoring starts.
        starts = [sum(1 for t in ids if t != self._minicons_pad_id) for ids in prompt_ids]
        items = []
        for i, (ids, start) in enumerate(zip(full, starts, strict=True)):
            if start >= len(ids):
                raise ValueError(
                    f"{field}[{i}] adds no token after its prompt (prompt {len(ids)} tokens): "
                    "check that the answer is not merged into the prompt by the tokenizer"
                )
            items.append(_Text(ids, max(start, 1)))
        return self._fit(items, field)

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text with the special tokens, as `tokenizer(texts)["input_ids"]` gives them.

        A fast tokenizer's Rust backend is called directly: the Python wrapper around it takes about as long
        as the tokenization itself. The first text is checked against the wrapper, which is used from then on if
        they differ. A backend left padding or truncating (the wrapper sets both on it per call, e.g. for another
        library sharing the tokenizer) would not give the wrapper's ids: the wrapper is used for that call.
        """
        backend = self._backend
        if backend is None or not texts or backend.padding is not None or backend.truncation is not None:
            return self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no character offsets needed
        ids = [e.ids for e in encode(texts, add_special_tokens=True)]
        if ids[0] != self.tokenizer(texts[:1], add_special_tokens=True)["input_ids"][0]:
            self._backend = None
            return self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return ids

    def _fit(self, items: list[_Text], field: str) -> list[_Text]:
        """Truncate texts longer than the model's context from the left (keeping a leading BOS), with a warning."""
        if self.max_length is None:
            return items
        too_long = [i for i, item in enumerate(items) if len(item.ids) > self.max_length]
        if not too_long:
            return items
        fitted = list(items)
        for i in too_long:
            ids, start = items[i].ids, items[i].start
            keep_bos = self.bos_id is not None and ids[0] == self.bos_id
            head = ids[:1] if keep_bos else []
            tail = ids[len(ids) - (self.max_length - len(head)) :]
            dropped = len(ids) - len(head) - len(tail)
            if start > 1 and start - dropped < 1:  # a conditional score whose answer alone does not fit
                raise ValueError(
                    f"{field}[{i}] alone has {len(ids) - start} tokens, more than the model's context of "
                    f"{self.max_length} tokens leaves after its prompt: shorten it"
                )
            new_start = start - dropped if start > 1 else 1
            fitted[i] = _Text(head + tail, new_start)
        warnings.warn(
            f"{len(too_long)} of {len(items)} {field} are longer than the model's context of {self.max_length} "
            f"tokens (first: {field}[{too_long[0]}], {len(items[too_long[0]].ids)} tokens); they were truncated "
            "from the left, keeping the BOS token, and only the tokens that remain are scored or used as context",
            stacklevel=3,
        )
        return fitted

    # ------------------------------------------------------------------------------------------- scoring
    def _score(self, texts: list[_Text], reduction: str, bow_correction: bool | str, progress=None) -> list[float]:
        """Score texts (packed into rows as prefix trees, see `_layout`); returns their scores in order."""
        words = self._word_starts_for(bow_correction)
        rows = self._layout(texts, drop=0 if words is not None else 1)
        # Widest first: rows of like width share a batch and pad little; the few rows wider than ROW_WIDTH (texts
        # longer than a row) pad each other instead of the rest.
        rows.sort(key=lambda row: len(row.ids), reverse=True)
        batches: list[list[_Row]] = []
        count = self.batch_size
        for row in rows:
            if count + len(row.texts) > self.batch_size:
                batches.append([])
                count = 0
            batches[-1].append(row)
            count += len(row.texts)
        results = [0.0] * len(texts)

        def score(batch: list[_Row]) -> list[float]:
            with torch.inference_mode():
                return self._score_batch(batch, texts, reduction, words).tolist()

        for batch, scores in zip(batches, self._map(score, batches), strict=True):
            members = [i for row in batch for i in row.texts]
            for i, value in zip(members, scores, strict=True):
                results[i] = value
            if progress is not None:
                progress(len(members))
        return results

    def _map(self, score, batches: list) -> Iterator:
        """Score the batches one after the other, or on `workers` threads of one torch thread each, in order.

        On a small model most ops are too small to split well over threads, and a thread waiting at a
        parallel op's barrier stalls when another process takes its core; whole batches on single-threaded
        workers keep every core busy instead. Results are yielded as they come, so progress is shown per batch.
        """
        if self.workers <= 1 or len(batches) < 2 or self.device.type != "cpu":
            yield from map(score, batches)
            return
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                yield from pool.map(score, batches)
        finally:
            torch.set_num_threads(threads)  # threads started later take this default again

    def _layout(self, texts: list[_Text], drop: int) -> list[_Row]:
        """Pack the texts into rows of at most ROW_WIDTH places, each row a prefix tree of its texts.

        Texts are sorted by their token ids, so texts that begin alike (the two answers of a pair, pairs with the
        same prompt, prompts that begin alike) are neighbours; a text shares with the row the longest beginning it
        has in common with the text before it (in sorted order no earlier text shares more) and adds the rest of
        its tokens. The row is thus the tree laid out depth-first, and a token's depth in the tree is its position
        in its text. Without the word-start correction a text's last token predicts nothing that is scored, so it
        is not run at all (`drop=1`). Without 4-D mask support each text gets a row of its own.
        """
        inputs = [text.ids[: max(1, len(text.ids) - drop)] for text in texts]
        if self._packable:
            order = sorted(range(len(texts)), key=inputs.__getitem__)
        else:
            order = sorted(range(len(texts)), key=lambda i: len(inputs[i]), reverse=True)
        rows: list[_Row] = []
        previous: list[int] = []
        for i in order:
            own = inputs[i]
            keep = _common_prefix(previous, own) if rows else 0
            row = rows[-1] if rows else None
            if (
                row is None
                or not self._packable
                or len(row.ids) + len(own) - keep > ROW_WIDTH
                or len(row.texts) >= self.batch_size
            ):
                row, keep = _Row([], [], [], [], []), 0
                rows.append(row)
            row.texts.append(i)
            row.keeps.append(keep)
            row.offsets.append(len(row.ids))
            row.ids += own[keep:]
            row.depth += range(keep, len(own))
            previous = own
        return rows

    def _score_batch(
        self, batch: list[_Row], texts: list[_Text], reduction: str, words: _WordStarts | None
    ) -> torch.Tensor:
        """Scores of all texts of a batch of rows (row by row, text by text), as one tensor.

        `words` is None without a word-start correction, else the word-start tokens and which correction to apply.
        """
        device = self.device
        bow = words is not None
        drop = 0 if bow else 1
        # 1. The rows as tensors: token ids, depth in the tree (= position in the text), which places are real.
        width = max(len(row.ids) for row in batch)
        input_ids = _pad([row.ids for row in batch], width, self._filler_id, device)
        depth = _pad([row.depth for row in batch], width, 0, device)
        used = torch.tensor([len(row.ids) for row in batch], device=device)
        real = torch.arange(width, device=device).unsqueeze(0) < used.unsqueeze(1)

        # 2. Run the model once on the batch and keep the hidden states.
        hidden = self._hidden_states(input_ids, depth, real)  # [rows, width, dim]

        # 3. Map every text's token t to its place in the flattened batch (shared tokens map to the same place).
        members = [texts[i] for row in batch for i in row.texts]
        lengths = torch.tensor([len(t.ids) for t in members], device=device)
        starts = torch.tensor([t.start for t in members], device=device)
        rows = torch.tensor([r for r, row in enumerate(batch) for _ in row.texts], device=device)
        longest = int(lengths.max())
        tokens = _pad([t.ids for t in members], longest, self._filler_id, device)  # [texts, T]
        keeps = torch.tensor([k for row in batch for k in row.keeps], device=device)
        offsets = torch.tensor([o for row in batch for o in row.offsets], device=device)
        t = torch.arange(longest, device=device).unsqueeze(0)  # [1, T]
        # Token t of a text is at the place added by the last text (up to and including it) that did not share
        # token t with the text before it; a row's first text shares nothing, so this never leaves the row.
        added_by = torch.where(keeps.unsqueeze(1) <= t, torch.arange(len(members), device=device).unsqueeze(1), -1)
        added_by = added_by.cummax(dim=0).values  # [texts, T]
        paths = offsets[added_by] + t - keeps[added_by]
        valid = t < lengths.unsqueeze(1)
        in_row = t < (lengths - drop).clamp(min=1).unsqueeze(1)  # the tokens that were run through the model
        flat = (rows.unsqueeze(1) * width + paths).where(in_row, 0)  # [texts, T]
        scored = valid & (t >= starts.unsqueeze(1))
        # Token t is predicted at place t-1; its word-start correction also looks at place t.
        prev_flat = torch.cat([flat[:, :1], flat[:, :-1]], dim=1)

        # 4. Output layer and log-softmax only where they are needed.
        needed = torch.zeros(input_ids.numel(), dtype=torch.bool, device=device)
        needed[prev_flat[scored]] = True
        if bow:
            needed[flat[scored]] = True
        where = needed.nonzero().squeeze(1)
        compact = torch.full_like(needed, -1, dtype=torch.long)
        compact[where] = torch.arange(where.numel(), device=device)
        prev_c = compact[prev_flat].clamp(min=0)
        log_norm, bow_lp, target_logits = self._normalizers(
            hidden.reshape(-1, hidden.shape[-1])[where], prev_c[scored], tokens[scored], words
        )
        token_lp = torch.zeros(scored.shape, dtype=log_norm.dtype, device=device)
        token_lp[scored] = target_logits - log_norm[prev_c[scored]]

        if bow:
            # log P(the next token starts a word) at every computed place.
            here_c = compact[flat].clamp(min=0)
            next_is_bow = torch.cat([words.is_bow[tokens[:, 1:]], torch.zeros_like(scored[:, :1])], 1)
            ends_word = (next_is_bow | (t == lengths.unsqueeze(1) - 1)) & scored
            if words.legacy:
                # minicons 0.3.8: every scored token but one that ends a word without starting one.
                loses = (words.is_bow[tokens] | ~ends_word) & scored
            else:
                # A token after a word end (it starts a word), except the first scored token.
                loses = torch.cat([torch.zeros_like(ends_word[:, :1]), ends_word[:, :-1]], 1)
                loses &= scored & (t > starts.unsqueeze(1))
            token_lp = token_lp + bow_lp[here_c] * ends_word - bow_lp[prev_c] * loses

        # 5. Reduce over each text's scored tokens.
        total = token_lp.sum(dim=1)
        if reduction == "mean":
            total = total / scored.sum(dim=1)
        return total

    def _normalizers(self, hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, words: _WordStarts | None):
        """log Z per place, log P(word start) per place (if `words`), and the logit of each (place, target) pair.

        The output layer runs over HEAD_CHUNK places at a time, so each block of logits is normalised while it
        is still in cache instead of writing all [places, vocabulary] logits to memory and reading them back.
        """
        n = hidden.shape[0]
        log_norm = torch.empty(n, device=hidden.device)
        bow_lp = torch.empty(n, device=hidden.device) if words is not None else None
        target_logits = torch.empty(rows.shape[0], device=hidden.device)
        for lo in range(0, n, HEAD_CHUNK):
            hi = min(lo + HEAD_CHUNK, n)
            logits = self._logits(hidden[lo:hi])
            log_norm[lo:hi] = _logsumexp(logits)
            if words is not None:
                bow_lp[lo:hi] = _logsumexp(logits[:, words.ids]) - log_norm[lo:hi]
            here = (rows >= lo) & (rows < hi)
            target_logits[here] = logits[rows[here] - lo, targets[here]]
        return log_norm, bow_lp, target_logits

    def _hidden_states(self, input_ids: torch.Tensor, depth: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        mask = self._attention_mask(depth, real)
        if self._fast_head:
            return self.model.base_model(
                input_ids=input_ids, attention_mask=mask, position_ids=depth, use_cache=False
            )[0]
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=depth, use_cache=False).logits

    def _logits(self, selected: torch.Tensor) -> torch.Tensor:
        """Logits (float32) at the selected places: the output layer applied there, or already computed."""
        if self._fast_head:
            return self.model.get_output_embeddings()(selected).float()
        return selected.float()  # the full model already produced logits

    def _attention_mask(self, depth: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Tree mask: a token sees its ancestors in its row's prefix tree and itself (see `_layout`)."""
        if not self._packable:
            return real.long()  # one text per row: the usual 2-D padding mask
        width = depth.shape[1]
        place = torch.arange(width, device=depth.device)
        # Laid out depth-first, the descendants of place j are the places after it up to the next place that is
        # no deeper than j (`end[j]`), so place i sees place j iff j <= i < end[j]. Padding has depth 0: it ends
        # every tree before it and sees only itself (so no row of the mask is empty: empty rows give NaN).
        after = place.unsqueeze(1) < place.unsqueeze(0)  # [j, k]: k comes after j
        closes = after & (depth.unsqueeze(1) <= depth.unsqueeze(2))  # [rows, j, k]: k is no deeper than j
        end = torch.where(closes, place, width).amin(dim=2)  # [rows, j]
        i, j = place.view(1, -1, 1), place.view(1, 1, -1)
        allowed = ((j <= i) & (i < end.unsqueeze(1))).unsqueeze(1)  # [rows, 1, i, j]
        if self.model.config._attn_implementation == "eager":
            dtype = self.model.dtype
            return torch.zeros(allowed.shape, dtype=dtype, device=depth.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        return allowed

    def _word_starts_for(self, bow_correction: bool | str) -> _WordStarts | None:
        """The word-start tokens of a correction (found once per kind), or None when no correction applies."""
        if not bow_correction:
            return None
        legacy = bow_correction == LEGACY_BOW
        if legacy not in self._word_starts:
            self._word_starts[legacy] = self._find_word_starts(legacy=True)
        return self._word_starts[legacy]

    def _find_word_starts(self, *, legacy: bool) -> _WordStarts | None:
        found = _word_start_tokens(self.tokenizer, self._vocab_size, legacy=legacy)
        if found is None:
            return None
        is_bow, ids = found
        return _WordStarts(is_bow.to(self.device), ids.to(self.device), legacy)

    def _check_fast_head(self) -> bool:
        """Whether logits == output layer(base model's hidden states) for this architecture (no logit scaling)."""
        head = self.model.get_output_embeddings()
        base = getattr(self.model, "base_model", None)
        if head is None or base is None or base is self.model:
            return False
        ids = torch.tensor([[self._filler_id, self._filler_id]], device=self.device)
        with torch.inference_mode():
            try:
                hidden = base(input_ids=ids)[0]
                expected = self.model(input_ids=ids).logits
            except (TypeError, ValueError):
                return False
            return hidden.shape[-1] == head.in_features and torch.allclose(head(hidden), expected, atol=1e-5)


def default_workers(device: str = "cpu") -> int:
    """Scoring workers for `device`: one single-threaded worker per torch thread on a CPU (see `Scorer._map`)."""
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


# ------------------------------------------------------------------------------------ minimal pairs
# How a minimal pair (prompt, chosen, rejected) is scored. The sequence methods score the whole dialogue
# `prompt + separator + answer`; the answer methods score the answer given `prompt + separator`.
METHODS = {
    "sequence_mean": "mean log-probability of the whole dialogue (the DPO write-up's numbers)",
    "sequence_sum_bow": "summed log-probability of the whole dialogue, beginning-of-word corrected (the later "
    "evaluation script's numbers)",
    "answer_sum": "summed log-probability of the answer given the prompt",
    "answer_mean": "mean log-probability of the answer given the prompt",
}
# Methods kept only to reproduce published numbers computed with an older scorer: `score_minimal_pairs` and
# `SEQUENCE_METHODS` accept them; prefer METHODS for new work.
LEGACY_METHODS = {
    "sequence_sum_bow_legacy": "summed log-probability of the whole text, beginning-of-word corrected as minicons "
    "0.3.8 did (the original work's BLiMP numbers)",
}
# The methods that score a whole text (BLiMP sentences, or prompt + separator + answer): method -> the
# (reduction, bow_correction) of `Scorer.sequence_scores`.
SEQUENCE_METHODS: dict[str, tuple[str, bool | str]] = {
    "sequence_mean": ("mean", False),
    "sequence_sum_bow": ("sum", True),
    "sequence_sum_bow_legacy": ("sum", LEGACY_BOW),
}


def score_minimal_pairs(
    scorer: Scorer,
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    method: str = "sequence_mean",
    separator: str = " ",
    progress: Callable[[int], object] | None = None,
) -> tuple[list[float], list[float]]:
    """Scores of the chosen and of the rejected answers of each pair under `method` (see METHODS, LEGACY_METHODS).

    `progress` is called after each batch with the number of texts scored (two per pair).
    """
    if method not in METHODS and method not in LEGACY_METHODS:
        raise ValueError(f"method must be one of {', '.join([*METHODS, *LEGACY_METHODS])}, got {method!r}")
    _check_same_length(prompts=prompts, chosen=chosen, rejected=rejected)
    columns = {"prompts": prompts, "chosen": chosen, "rejected": rejected}
    for name, texts in columns.items():
        for i, text in enumerate(_as_list(texts, name)):
            _check_text(text, f"{name}[{i}]")
    prompts, chosen, rejected = ([t.strip() for t in texts] for texts in columns.values())
    if method.startswith("answer_"):
        reduction = method.removeprefix("answer_")
        return scorer.pair_conditional_scores(
            prompts, chosen, rejected, reduction=reduction, separator=separator, progress=progress
        )
    reduction, bow = SEQUENCE_METHODS[method]
    a = [p + separator + c for p, c in zip(prompts, chosen, strict=True)]
    b = [p + separator + r for p, r in zip(prompts, rejected, strict=True)]
    return scorer.pair_sequence_scores(a, b, reduction=reduction, bow_correction=bow, progress=progress)


def compare_pairs(
    chosen_scores: Sequence[float], rejected_scores: Sequence[float], *, margins: bool = False, outcomes: bool = False
) -> dict:
    """Accuracy of a set of pairs: a pair is correct when its chosen answer scores strictly higher.

    Ties (equal scores, e.g. identical answers) count as not correct and are reported in `ties`. With `margins`,
    `margins` holds each pair's score(chosen) - score(rejected); with `outcomes`, `correct` holds whether each
    pair is correct (in order: what `stats.accuracy_interval` and `stats.compare_paired` take).
    """
    _check_same_length(chosen_scores=chosen_scores, rejected_scores=rejected_scores)
    n = len(chosen_scores)
    if n == 0:
        raise ValueError("there are no pairs to compare: give at least one pair")
    diffs = [c - r for c, r in zip(chosen_scores, rejected_scores, strict=True)]
    correct = [d > 0 for d in diffs]
    result = {"accuracy": sum(correct) / n, "n": n, "ties": sum(d == 0 for d in diffs)}
    if margins:
        result["margins"] = diffs
    if outcomes:
        result["correct"] = correct
    return result


# --------------------------------------------------------------------------------------------- helpers
def _vocab_size(model, tokenizer) -> int:
    head = model.get_output_embeddings()
    return head.out_features if head is not None else max(len(tokenizer), model.config.vocab_size)


def _word_start_tokens(
    tokenizer, vocab_size: int, *, legacy: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Which token ids start a word, found as minicons does (the symbol the tokenizer uses for a space).

    Returns (a mask over the vocabulary, the ids), or None for a tokenizer without a word-start marker. minicons
    takes the first character of the space's token and adds the added tokens that strip spaces on their left;
    0.3.8 (`legacy`) took the whole token and no added tokens.
    """
    try:
        token = tokenizer.convert_ids_to_tokens(tokenizer(" ", add_special_tokens=False).input_ids[0])
        symbol = token if legacy else token[0]
    except (IndexError, TypeError):
        symbol = None
    if symbol is None or symbol in (tokenizer.bos_token, tokenizer.eos_token):
        return None
    ids = [i for token, i in tokenizer.get_vocab().items() if token and token[0] == symbol and i < vocab_size]
    if legacy and not ids:
        raise ValueError(
            f"minicons 0.3.8's beginning-of-word correction is undefined for this tokenizer: its space is the token "
            f"{symbol!r}, which no vocabulary entry begins with as one character (0.3.8 then scores -inf or NaN); "
            "use the current correction (bow_correction=True, method sequence_sum_bow)"
        )
    if not legacy:
        ids += [i for i, added in tokenizer.added_tokens_decoder.items() if added.lstrip and i < vocab_size]
    is_bow = torch.zeros(vocab_size, dtype=torch.bool)
    is_bow[ids] = True
    return is_bow, is_bow.nonzero().squeeze(1)


def _logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dimension through the fused log-softmax kernel (about 2x faster on CPU).

    cross_entropy(x, 0) = logsumexp(x) - x[0], so adding x[0] back gives logsumexp(x), equally stable.
    """
    first = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return logits[:, 0] + torch.nn.functional.cross_entropy(logits, first, reduction="none")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):  # noqa: B905 - lengths differ by design
        if x != y:
            break
        n += 1
    return n


def _pad(rows: list[list[int]], width: int, value: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def _as_list(texts: Sequence[str], field: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{field} must be a list of strings, not one string: wrap it as [{field[:-1] or field}]")
    return list(texts)


def _check_text(text: str, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where} is empty or whitespace-only: there is nothing to score; remove it or give a text")


def _check_bow_correction(bow_correction: bool | str) -> None:
    if not (bow_correction is True or bow_correction is False or bow_correction == LEGACY_BOW):
        raise ValueError(
            f"bow_correction must be True, False or {LEGACY_BOW!r} (minicons 0.3.8's correction), "
            f"got {bow_correction!r}"
        )


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _check_same_length(**lists: Sequence[str]) -> None:
    sizes = {name: len(v) for name, v in lists.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the lists must have the same length, got {sizes}")
