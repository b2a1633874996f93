"""Log-probabilities of texts under a causal language model: the one scorer of babyhub.

Everything that compares texts by likelihood (`babyhub eval`, the `dialogue_minpairs` metric, the
chat Space, the model cards) goes through `Scorer`, so the numbers agree everywhere. The module
depends only on torch and transformers because it is shipped, as it is, beside the metric and the
chat Space (see hub_tools/space_bundle.py).

Scores reproduce minicons' `IncrementalLMScorer` (`sequence_score`, `conditional_score`), the scorer
of the original work, to float precision:
- a text is tokenized with the tokenizer's special tokens (a BOS if the tokenizer adds one) and the
  first token is never scored: it is the context the others are predicted from;
- `reduction="mean"` averages, `"sum"` adds the log-probabilities (natural log) of the scored tokens;
- `bow_correction=True` applies the beginning-of-word correction (Pimentel & Meister 2024, Oh &
  Schuler 2024) exactly as minicons does: a token that ends a word gains log P(next token starts a
  word), a token that follows a word end (except the first scored one) loses log P(a word starts
  here). Tokenizers without a word-start marker (no `Ġ`/`▁`) ignore it, as in minicons.

Speed (why it is fast): texts are tokenized at once, sorted by length and padded into batches, run
under `torch.inference_mode`; the output layer and the log-softmax are computed only at the positions
that are scored (without the word-start correction a text's last token is not run at all: it predicts nothing
scored), and the reduction is a masked tensor sum (no Python loop over tokens). A fast tokenizer's Rust
backend is called directly (its Python wrapper costs as much as the tokenizing). The two texts
of a minimal pair share their beginning (the prompt): `pair_sequence_scores` / `pair_conditional_scores`
pack a pair into one row — shared tokens once, then each continuation attending to the shared part
and to itself only (a tree-shaped 4-D attention mask with explicit positions) — so the shared tokens
are computed once instead of twice (41 -> 27 positions per eval pair). With `workers=N` whole batches
run on N single-threaded workers: a baby's ops are too small to split well over threads.

Texts longer than the model's context (`config.max_position_embeddings`) are truncated from the left
with a warning: the BOS token (if any) is kept, the oldest tokens after it are dropped, and the tokens
that remain are scored (for a conditional score the prompt loses its beginning; an answer that does not
fit on its own is refused). Empty or whitespace-only texts and answers raise `ValueError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REDUCTIONS = ("sum", "mean")
# Attention implementations that accept a ready 4-D mask (needed to pack a pair into one row).
_PACKABLE_ATTENTION = ("sdpa", "eager")
# Places whose logits are computed and normalised at once: a block of logits that stays in the CPU cache.
HEAD_CHUNK = 512


@dataclass(frozen=True)
class _Text:
    """One tokenized text to score: its token ids and the position of its first scored token (>= 1)."""

    ids: list[int]
    start: int


class Scorer:
    """Scores texts with a causal LM; see the module docstring for the exact definitions."""

    def __init__(self, model, tokenizer, *, device: str = "cpu", batch_size: int = 64, workers: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.device = torch.device(device)
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
        is_bow, bow_ids = _word_start_tokens(tokenizer, _vocab_size(model, tokenizer))
        self._is_bow = is_bow.to(self.device)
        self._bow_ids = bow_ids.to(self.device) if bow_ids is not None else None
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
    def sequence_scores(
        self,
        texts: Sequence[str],
        *,
        reduction: str = "mean",
        bow_correction: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> list[float]:
        """Log-probability of each text (all tokens after the first), averaged or summed over its tokens.

        `progress`, if given, is called after each batch with the number of texts it scored (e.g. a tqdm's update).
        """
        _check_reduction(reduction)
        items = [(t,) for t in self._encode_texts(texts, "texts")]
        return [s for (s,) in self._score(items, reduction, bow_correction, progress)]

    def conditional_scores(
        self,
        prompts: Sequence[str],
        answers: Sequence[str],
        *,
        reduction: str = "sum",
        separator: str = " ",
        bow_correction: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> list[float]:
        """log p(answer | prompt + separator), summed or averaged over the answer's tokens."""
        _check_reduction(reduction)
        _check_same_length(prompts=prompts, answers=answers)
        items = [(t,) for t in self._encode_conditional(prompts, answers, separator, "answers")]
        return [s for (s,) in self._score(items, reduction, bow_correction, progress)]

    def pair_sequence_scores(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        *,
        reduction: str = "mean",
        bow_correction: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> tuple[list[float], list[float]]:
        """`sequence_scores` of two aligned lists (e.g. chosen and rejected); shared beginnings are computed once."""
        _check_reduction(reduction)
        _check_same_length(texts_a=texts_a, texts_b=texts_b)
        a = self._encode_texts(texts_a, "texts_a")
        b = self._encode_texts(texts_b, "texts_b")
        return _unzip(self._score(self._pairs(a, b), reduction, bow_correction, progress))

    def pair_conditional_scores(
        self,
        prompts: Sequence[str],
        answers_a: Sequence[str],
        answers_b: Sequence[str],
        *,
        reduction: str = "sum",
        separator: str = " ",
        bow_correction: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> tuple[list[float], list[float]]:
        """`conditional_scores` of two answers to each prompt; the prompt is computed once per pair."""
        _check_reduction(reduction)
        _check_same_length(prompts=prompts, answers_a=answers_a, answers_b=answers_b)
        a = self._encode_conditional(prompts, answers_a, separator, "answers_a")
        b = self._encode_conditional(prompts, answers_b, separator, "answers_b")
        return _unzip(self._score(self._pairs(a, b), reduction, bow_correction, progress))

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

    def _pairs(self, a: list[_Text], b: list[_Text]) -> list[tuple[_Text, ...]]:
        # Without 4-D mask support each text gets its own row; scores are the same, only slower.
        if self._packable:
            return list(zip(a, b, strict=True))
        return [(x,) for x in a] + [(y,) for y in b]

    # ------------------------------------------------------------------------------------------- scoring
    def _score(
        self, items: list[tuple[_Text, ...]], reduction: str, bow_correction: bool, progress=None
    ) -> list[tuple[float, ...]]:
        """Score groups of one text or of two texts packed in one row; returns the scores per group, in order."""
        bow = bow_correction and self._bow_ids is not None
        lengths = [_row_length(group) for group in items]
        # Longest first: the first batches set glibc's mmap threshold to the largest buffers, so later (smaller)
        # buffers come from the heap instead of fresh pages (growing sizes cost ~20 % more in page faults).
        order = sorted(range(len(items)), key=lambda i: lengths[i], reverse=True)
        results: list[tuple[float, ...] | None] = [None] * len(items)
        texts_per_row = max(len(g) for g in items) if items else 1
        rows_per_batch = max(1, self.batch_size // texts_per_row)
        batches = [order[lo : lo + rows_per_batch] for lo in range(0, len(order), rows_per_batch)]

        def score(batch: list[int]) -> list[float]:
            with torch.inference_mode():
                return self._score_batch([items[i] for i in batch], reduction, bow).tolist()

        for batch, scores in zip(batches, self._map(score, batches), strict=True):
            k = 0
            for i in batch:
                results[i] = tuple(scores[k : k + len(items[i])])
                k += len(items[i])
            if progress is not None:
                progress(k)
        return results

    def _map(self, score, batches: list) -> list:
        """Score the batches one after the other, or on `workers` threads of one torch thread each.

        On a small model most ops are too small to split well over threads, and a thread waiting at a
        parallel op's barrier stalls when another process takes its core; whole batches on single-threaded
        workers keep every core busy instead.
        """
        if self.workers <= 1 or len(batches) < 2 or self.device.type != "cpu":
            return [score(b) for b in batches]
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                return list(pool.map(score, batches))
        finally:
            torch.set_num_threads(threads)  # threads started later take this default again

    def _score_batch(self, batch: list[tuple[_Text, ...]], reduction: str, bow: bool) -> torch.Tensor:
        """Scores of all texts of a batch of rows (row by row, text by text), as one tensor."""
        device = self.device
        # 1. Lay out each row: the tokens shared by its texts once, then what differs, text after text. Without
        # the word-start correction a text's last token predicts nothing that is scored: it is not run at all.
        drop = 0 if bow else 1
        row_ids, row_branch, row_pos = [], [], []
        texts, text_row, text_shared, text_offset = [], [], [], []
        for r, group in enumerate(batch):
            inputs = [text.ids[: max(1, len(text.ids) - drop)] for text in group]
            shared = min(_common_prefix(group), *(len(ids) for ids in inputs))
            ids, branch, pos = list(inputs[0][:shared]), [0] * shared, list(range(shared))
            for j, (text, own) in enumerate(zip(group, inputs, strict=True)):
                texts.append(text)
                text_row.append(r)
                text_shared.append(shared)
                text_offset.append(len(ids))
                rest = own[shared:]
                ids += rest
                branch += [j + 1] * len(rest)
                pos += range(shared, len(own))
            row_ids.append(ids)
            row_branch.append(branch)
            row_pos.append(pos)
        width = max(len(ids) for ids in row_ids)
        input_ids = _pad(row_ids, width, self._filler_id, device)
        branch = _pad(row_branch, width, -1, device)
        positions = _pad(row_pos, width, 0, device)

        # 2. Run the model once on the batch and keep the hidden states.
        hidden = self._hidden_states(input_ids, branch, positions)  # [rows, width, dim]

        # 3. Map every text's token t to its place in the flattened batch (shared tokens map to the same place).
        lengths = torch.tensor([len(t.ids) for t in texts], device=device)
        starts = torch.tensor([t.start for t in texts], device=device)
        shared = torch.tensor(text_shared, device=device)
        offset = torch.tensor(text_offset, device=device)
        rows = torch.tensor(text_row, device=device)
        longest = int(lengths.max())
        tokens = _pad([t.ids for t in texts], longest, self._filler_id, device)  # [texts, T]
        t = torch.arange(longest, device=device).unsqueeze(0)  # [1, T]
        valid = t < lengths.unsqueeze(1)
        in_row = t < (lengths - drop).clamp(min=1).unsqueeze(1)  # the tokens that were run through the model
        place = torch.where(t < shared.unsqueeze(1), t, t - shared.unsqueeze(1) + offset.unsqueeze(1))
        flat = (rows.unsqueeze(1) * width + place).where(in_row, 0)  # [texts, T]
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
            hidden.reshape(-1, hidden.shape[-1])[where], prev_c[scored], tokens[scored], bow
        )
        token_lp = torch.zeros(scored.shape, dtype=log_norm.dtype, device=device)
        token_lp[scored] = target_logits - log_norm[prev_c[scored]]

        if bow:
            # log P(the next token starts a word) at every computed place.
            here_c = compact[flat].clamp(min=0)
            next_is_bow = torch.cat([self._is_bow[tokens[:, 1:]], torch.zeros_like(scored[:, :1])], 1)
            ends_word = (next_is_bow | (t == lengths.unsqueeze(1) - 1)) & scored
            after_word_end = torch.cat([torch.zeros_like(ends_word[:, :1]), ends_word[:, :-1]], 1)
            after_word_end &= scored & (t > starts.unsqueeze(1))
            token_lp = token_lp + bow_lp[here_c] * ends_word - bow_lp[prev_c] * after_word_end

        # 5. Reduce over each text's scored tokens.
        total = token_lp.sum(dim=1)
        if reduction == "mean":
            total = total / scored.sum(dim=1)
        return total

    def _normalizers(self, hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, bow: bool):
        """log Z per place, log P(word start) per place (if `bow`), and the logit of each (place, target) pair.

        The output layer runs over HEAD_CHUNK places at a time, so each block of logits is normalised while it
        is still in cache instead of writing all [places, vocabulary] logits to memory and reading them back.
        """
        n = hidden.shape[0]
        log_norm = torch.empty(n, device=hidden.device)
        bow_lp = torch.empty(n, device=hidden.device) if bow else None
        target_logits = torch.empty(rows.shape[0], device=hidden.device)
        for lo in range(0, n, HEAD_CHUNK):
            hi = min(lo + HEAD_CHUNK, n)
            logits = self._logits(hidden[lo:hi])
            log_norm[lo:hi] = _logsumexp(logits)
            if bow:
                bow_lp[lo:hi] = _logsumexp(logits[:, self._bow_ids]) - log_norm[lo:hi]
            here = (rows >= lo) & (rows < hi)
            target_logits[here] = logits[rows[here] - lo, targets[here]]
        return log_norm, bow_lp, target_logits

    def _hidden_states(self, input_ids: torch.Tensor, branch: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        mask = self._attention_mask(branch)
        if self._fast_head:
            return self.model.base_model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False
            )[0]
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False).logits

    def _logits(self, selected: torch.Tensor) -> torch.Tensor:
        """Logits (float32) at the selected places: the output layer applied there, or already computed."""
        if self._fast_head:
            return self.model.get_output_embeddings()(selected).float()
        return selected.float()  # the full model already produced logits

    def _attention_mask(self, branch: torch.Tensor) -> torch.Tensor:
        """Causal mask where a token sees the shared part and its own text (branch 0 = shared, -1 = padding)."""
        if not self._packable:
            return (branch >= 0).long()  # one text per row: the usual 2-D padding mask
        width = branch.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=branch.device).tril()
        q, k = branch.unsqueeze(2), branch.unsqueeze(1)
        allowed = causal & (k >= 0) & ((k == 0) | (k == q))
        # Padding queries attend to themselves only, so no row of the mask is empty (empty rows give NaN).
        allowed |= torch.eye(width, dtype=torch.bool, device=branch.device) & (q < 0)
        allowed = allowed.unsqueeze(1)
        if self.model.config._attn_implementation == "eager":
            dtype = self.model.dtype
            return torch.zeros(allowed.shape, dtype=dtype, device=branch.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        return allowed

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
    """Scores of the chosen and of the rejected answers of each pair under `method` (see METHODS).

    `progress` is called after each batch with the number of texts scored (two per pair).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
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
    reduction, bow = ("mean", False) if method == "sequence_mean" else ("sum", True)
    a = [p + separator + c for p, c in zip(prompts, chosen, strict=True)]
    b = [p + separator + r for p, r in zip(prompts, rejected, strict=True)]
    return scorer.pair_sequence_scores(a, b, reduction=reduction, bow_correction=bow, progress=progress)


def compare_pairs(chosen_scores: Sequence[float], rejected_scores: Sequence[float], *, margins: bool = False) -> dict:
    """Accuracy of a set of pairs: a pair is correct when its chosen answer scores strictly higher.

    Ties (equal scores, e.g. identical answers) count as not correct and are reported in `ties`.
    """
    _check_same_length(chosen_scores=chosen_scores, rejected_scores=rejected_scores)
    n = len(chosen_scores)
    if n == 0:
        raise ValueError("there are no pairs to compare: give at least one pair")
    diffs = [c - r for c, r in zip(chosen_scores, rejected_scores, strict=True)]
    result = {"accuracy": sum(d > 0 for d in diffs) / n, "n": n, "ties": sum(d == 0 for d in diffs)}
    if margins:
        result["margins"] = diffs
    return result


# --------------------------------------------------------------------------------------------- helpers
def _vocab_size(model, tokenizer) -> int:
    head = model.get_output_embeddings()
    return head.out_features if head is not None else max(len(tokenizer), model.config.vocab_size)


def _word_start_tokens(tokenizer, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which token ids start a word, found as minicons does (the symbol the tokenizer uses for a space)."""
    is_bow = torch.zeros(vocab_size, dtype=torch.bool)
    try:
        symbol = tokenizer.convert_ids_to_tokens(tokenizer(" ", add_special_tokens=False).input_ids[0])[0]
    except (IndexError, TypeError):
        symbol = None
    if symbol is None or symbol in (tokenizer.bos_token, tokenizer.eos_token):
        return is_bow, None
    ids = [i for token, i in tokenizer.get_vocab().items() if token and token[0] == symbol and i < vocab_size]
    ids += [i for i, added in tokenizer.added_tokens_decoder.items() if added.lstrip and i < vocab_size]
    is_bow[ids] = True
    return is_bow, is_bow.nonzero().squeeze(1)


def _logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dimension through the fused log-softmax kernel (about 2x faster on CPU).

    cross_entropy(x, 0) = logsumexp(x) - x[0], so adding x[0] back gives logsumexp(x), equally stable.
    """
    first = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return logits[:, 0] + torch.nn.functional.cross_entropy(logits, first, reduction="none")


def _common_prefix(group: tuple[_Text, ...]) -> int:
    if len(group) == 1:
        return len(group[0].ids)
    a, b = group[0].ids, group[1].ids
    n = 0
    for x, y in zip(a, b):  # noqa: B905 - lengths differ by design
        if x != y:
            break
        n += 1
    return n


def _row_length(group: tuple[_Text, ...]) -> int:
    shared = _common_prefix(group)
    return shared + sum(len(t.ids) - shared for t in group)


def _pad(rows: list[list[int]], width: int, value: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def _unzip(results: list[tuple[float, ...]]) -> tuple[list[float], list[float]]:
    if results and len(results[0]) == 2:
        return [r[0] for r in results], [r[1] for r in results]
    half = len(results) // 2  # unpacked pairs: all first texts, then all second texts
    return [r[0] for r in results[:half]], [r[0] for r in results[half:]]


def _as_list(texts: Sequence[str], field: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{field} must be a list of strings, not one string: wrap it as [{field[:-1] or field}]")
    return list(texts)


def _check_text(text: str, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where} is empty or whitespace-only: there is nothing to score; remove it or give a text")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _check_same_length(**lists: Sequence[str]) -> None:
    sizes = {name: len(v) for name, v in lists.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the lists must have the same length, got {sizes}")
