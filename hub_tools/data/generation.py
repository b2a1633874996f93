"""Fast batched sampling from a teacher whose prompts share a long prefix (prefix caching, as vLLM does).

Every prompt of a synthesis run starts with the same system prompt (69 tokens through SmolLM2's chat template)
and differs only in the caregiver's utterance (16 more tokens on average with the template around it, on the first
64 training rows). Plain batched `generate` runs the whole prompt of every row; here the shared prefix runs once,
its keys and values are copied into a preallocated cache for every row of the batch, and only the rows' own
suffixes (packed one after another, without padding) and the new tokens are computed; rows that have stopped
leave the batch.

The cache of one batch is laid out the same for every row (one `StaticCache`):

    [ shared prefix (P) | left padding + row suffix (S, right-aligned) | new tokens (T) ]

A 4-D mask keeps padding out of every row's attention, and explicit position ids give every token the position it
has in its own prompt (prefix 0..P-1, suffix from P on, new tokens after it), so each row computes what plain
`generate` computes on its left-padded prompt: greedy answers are the same token for token, up to float rounding
in near-ties (the matrix shapes differ).

Sampling is seeded per row, not per batch: row r of a run with seed s draws its uniforms from its own generator
seeded with `row_seed(s, r)`, and samples by inverse CDF over temperature-scaled, top-k/top-p-filtered
probabilities. A row's draws therefore depend on neither its batch nor the process that runs it, so a run split
into shards across processes (each shard a range of whole batches) gives the rows of a one-process run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hub_tools.data.sampling import Sampling, row_seed  # noqa: F401  (re-exported: the generator's settings)

# Suffixes are run packed into sequences of at most this many tokens (attention grows with the square of it).
PACK_WIDTH = 256
# The nucleus is looked for among the most likely tokens first; the full sort runs only for rows where it is wider.
NUCLEUS_CANDIDATES = 64
DEFAULT_SAMPLING = Sampling()  # the original study's settings


def row_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """[rows, steps] uniforms in [0, 1): row i's from its own generator seeded with seeds[i]."""
    out = torch.empty(len(seeds), steps, dtype=torch.float64)
    generator = torch.Generator()
    for i, seed in enumerate(seeds):
        generator.manual_seed(seed)
        torch.rand(steps, generator=generator, dtype=torch.float64, out=out[i])
    return out


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens all sequences share."""
    first, length = sequences[0], min(len(s) for s in sequences)
    for i in range(length):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return length


def _nucleus_sample(scores: torch.Tensor, uniforms: torch.Tensor, top_p: float) -> torch.Tensor:
    """Inverse-CDF sampling from softmax(scores) restricted to the top-p nucleus.

    The nucleus is the most likely tokens whose preceding (more likely) mass is below top_p: the tokens HF's
    TopPLogitsWarper keeps. It is found among the NUCLEUS_CANDIDATES most likely tokens; rows whose nucleus is
    wider (rare at temperature 0.7) fall back to a full sort.
    """
    probs = torch.softmax(scores, dim=-1)
    k = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    top, index = torch.topk(probs, k, dim=-1, sorted=True)
    before = top.cumsum(-1) - top  # mass of the more likely tokens
    wide = (before[:, -1] < top_p) & (k < probs.shape[-1])
    if bool(wide.any()):
        full, full_index = torch.sort(probs[wide], dim=-1, descending=True, stable=True)
        picked = _pick(full, full.cumsum(-1) - full, uniforms[wide], top_p)
        tokens = torch.empty(len(probs), dtype=torch.long)
        tokens[wide] = full_index.gather(1, picked[:, None]).squeeze(1)
        narrow = ~wide
        tokens[narrow] = index[narrow].gather(1, _pick(top[narrow], before[narrow], uniforms[narrow], top_p)[:, None])[
            :, 0
        ]
        return tokens
    return index.gather(1, _pick(top, before, uniforms, top_p)[:, None]).squeeze(1)


def _pick(sorted_probs: torch.Tensor, before: torch.Tensor, uniforms: torch.Tensor, top_p: float) -> torch.Tensor:
    """Column of the sampled token in each row of descending probabilities, the nucleus renormalised."""
    in_nucleus = before < top_p  # a prefix of each row, since `before` grows along it
    in_nucleus[:, 0] = True  # the most likely token is always kept
    cumulative = torch.where(in_nucleus, sorted_probs, 0.0).double().cumsum(-1)
    column = torch.searchsorted(cumulative, (uniforms * cumulative[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return torch.minimum(column, in_nucleus.sum(-1) - 1)


def choose_tokens(logits: torch.Tensor, uniforms: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The next token of each row: argmax when greedy, else a seeded sample (see `_nucleus_sample`)."""
    if sampling.greedy:
        return logits.argmax(-1)
    scores = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(scores, min(sampling.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return _nucleus_sample(scores, uniforms, sampling.top_p)


class PrefixCachedGenerator:
    """Batched generation for prompts that share a prefix: the prefix's KV cache is computed once and reused.

    Args:
        model: a causal LM from transformers (decoder-only, `sdpa` or `eager` attention).
        tokenizer: its tokenizer (for stop strings and the EOS/pad ids).
        stop_strings: a row stops once its decoded new text contains one of these.
        stop_when: a row also stops once this returns True for its decoded new text (e.g. when the part of the
            answer that will be kept is complete).
        prefix_ids: the prefix to cache; by default the longest one all prompts of a batch share. Pass the prefix
            of the whole run so that every batch (and every shard of a run) splits its prompts at the same place.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        stop_strings: Sequence[str] = (),
        stop_when: Callable[[str], bool] | None = None,
        prefix_ids: Sequence[int] | None = None,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.stop_strings, self.stop_when = tuple(stop_strings), stop_when
        self.prefix_ids = tuple(prefix_ids) if prefix_ids is not None else None
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = torch.tensor(sorted(set(eos)), dtype=torch.long)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
        self.pad_id = int(pad)
        self._cached: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _prefix_states(self, prefix: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) of the prefix, [1, heads, P, dim]; computed once per distinct prefix."""
        if self._cached is None or self._cached[0] != prefix:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True, logits_to_keep=1)
            self._cached = (prefix, [(layer.keys, layer.values) for layer in cache.layers])
        return self._cached[1]

    def _split(self, prompts: Sequence[Sequence[int]]) -> int:
        """Length of the cached prefix for these prompts: at least one token of each prompt stays outside it."""
        limit = min(len(p) for p in prompts) - 1
        if self.prefix_ids is not None and all(tuple(p[: len(self.prefix_ids)]) == self.prefix_ids for p in prompts):
            return min(len(self.prefix_ids), limit)
        return min(common_prefix_length(prompts), limit)

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Sequence[int]], seeds: Sequence[int], sampling: Sampling = DEFAULT_SAMPLING
    ) -> list[list[int]]:
        """The new tokens of each prompt (up to and including the EOS or the token that completes a stop string).

        Args:
            prompts: token ids of each full prompt (the same ids plain `generate` would get, without padding).
            seeds: one sampling seed per prompt (see `row_seed`); ignored when sampling is greedy.
            sampling: temperature, top_p, top_k and the number of new tokens.

        Returns:
            One list of new token ids per prompt.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt.")
        if not prompts:
            return []

        rows, steps = len(prompts), sampling.max_new_tokens
        p = self._split(prompts)
        prefix = tuple(prompts[0][:p])
        suffixes = [list(prompt[p:]) for prompt in prompts]
        width = max(len(s) for s in suffixes)
        total = p + width + steps
        # 1. The suffixes after the prefix, packed without padding (see `_prefill`), and the batch's cache.
        lengths = torch.tensor([len(s) for s in suffixes])
        logits, cache = self._prefill(prefix, suffixes, width, total)
        # 2. Which places each row may attend to: the prefix, its own suffix (right-aligned), its new tokens.
        visible = torch.zeros(rows, total, dtype=torch.bool)
        visible[:, :p] = True
        visible[:, p : p + width] = torch.arange(width) >= (width - lengths)[:, None]
        uniforms = row_uniforms(seeds, steps) if not sampling.greedy else torch.zeros(rows, steps)
        # 3. One token per step for the rows still going. `active` maps the batch's rows to the prompts; finished
        # rows leave the batch (and the cache) once they are a quarter of it, so short answers stop costing.
        new = torch.full((rows, steps), self.pad_id, dtype=torch.long)
        ends = torch.full((rows,), steps, dtype=torch.long)  # a row's new tokens are new[row, :ends[row]]
        active = torch.arange(rows)
        done = torch.zeros(rows, dtype=torch.bool)
        for step in range(steps):
            tokens = torch.where(done, self.pad_id, choose_tokens(logits, uniforms[active, step], sampling))
            new[active, step] = tokens
            texts_done = self._stopped(new[active, : step + 1], done)
            stopped = ~done & (torch.isin(tokens, self.eos_ids) | texts_done)
            ends[active[stopped]] = step + 1
            done |= stopped
            if bool(done.all()) or step == steps - 1:
                break
            if int(done.sum()) * 4 >= len(done):
                keep = (~done).nonzero().flatten()
                cache.reorder_cache(keep)
                active, done, tokens = active[keep], done[keep], tokens[keep]
                visible, lengths = visible[keep], lengths[keep]
            # The new token goes to place P + S + step; every row sees it (its own) and all it saw before.
            visible[:, p + width + step] = True
            logits = self._forward(tokens[:, None], (p + lengths + step)[:, None], visible[:, None, None, :], cache)
        return [row[:end].tolist() for row, end in zip(new, ends.tolist(), strict=True)]

    def _prefill(self, prefix: tuple[int, ...], suffixes: list[list[int]], width: int, total: int):
        """Run every row's suffix after the cached prefix; return each row's next-token logits and the batch's cache.

        Suffixes differ in length, so a padded batch would run much padding (up to the longest suffix). They are
        packed instead, one after another, into a few sequences of at most PACK_WIDTH tokens, each token attending
        to the prefix and to its own row's earlier tokens (a 4-D mask, positions from P on). Their keys and values
        are then laid out in the batch's StaticCache: the prefix in places [0, P), row i's suffix right-aligned in
        [P + width - len_i, P + width); the padding places in between stay zero and are masked for every row.
        """
        from transformers import DynamicCache, StaticCache

        p, rows = len(prefix), len(suffixes)
        groups, current = [], []
        for row, suffix in enumerate(suffixes):
            if current and sum(len(suffixes[r]) for r in current) + len(suffix) > PACK_WIDTH:
                groups.append(current)
                current = []
            current.append(row)
        groups.append(current)
        n = max(sum(len(suffixes[r]) for r in group) for group in groups)
        input_ids = torch.full((len(groups), n), self.pad_id, dtype=torch.long)
        owner = torch.full((len(groups), n), -1, dtype=torch.long)  # the row of each packed token; -1: padding
        offset = torch.zeros(len(groups), n, dtype=torch.long)  # its index in its row's suffix
        last = []  # (group, column) of each row's last suffix token
        for g, group in enumerate(groups):
            column = 0
            for row in group:
                size = len(suffixes[row])
                input_ids[g, column : column + size] = torch.tensor(suffixes[row], dtype=torch.long)
                owner[g, column : column + size] = row
                offset[g, column : column + size] = torch.arange(size)
                column += size
                last.append((g, column - 1))
        causal = torch.arange(n)[None, :] <= torch.arange(n)[:, None]
        own_row = (owner[:, :, None] == owner[:, None, :]) & causal  # padding sees padding: no empty mask row
        mask = torch.cat([torch.ones(len(groups), n, p, dtype=torch.bool), own_row], dim=-1).unsqueeze(1)
        packed = DynamicCache(config=self.model.config)
        states = self._prefix_states(prefix) if p else []
        for layer, (keys, values) in enumerate(states):
            packed.update(keys.expand(len(groups), -1, -1, -1), values.expand(len(groups), -1, -1, -1), layer)
        columns = sorted({column for _, column in last})
        out = self.model(
            input_ids=input_ids,
            position_ids=p + offset,
            attention_mask=mask,
            cache=packed,
            use_cache=True,
            logits_to_keep=torch.tensor(columns),
        )
        logits = torch.stack([out.logits[g, columns.index(column)] for g, column in last])
        # The batch's cache, written once through the cache's own update.
        valid = owner >= 0
        group_index, column_index = valid.nonzero(as_tuple=True)
        target_rows = owner[valid]
        target_places = p + width - torch.tensor([len(s) for s in suffixes])[target_rows] + offset[valid]
        cache = StaticCache(config=self.model.config, max_cache_len=total)
        for layer, packed_layer in enumerate(packed.layers):
            laid_out = []
            for source in (packed_layer.keys, packed_layer.values):
                batch = source.new_zeros(rows, source.shape[1], p + width, source.shape[3])
                batch[:, :, :p] = source[:1, :, :p]
                batch[target_rows, :, target_places] = source[group_index, :, p + column_index]
                laid_out.append(batch)
            cache.update(*laid_out, layer)
        return logits, cache

    def _forward(self, input_ids, positions, mask, cache) -> torch.Tensor:
        """Logits of the last place of each row, the new keys and values written into the cache."""
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=mask,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    def _stopped(self, new: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Rows (not yet done) whose new text now contains a stop string or satisfies `stop_when`."""
        stopped = torch.zeros(len(new), dtype=torch.bool)
        if not self.stop_strings and self.stop_when is None:
            return stopped
        active = (~done).nonzero().flatten().tolist()
        texts = self.tokenizer.batch_decode(new[active].tolist(), skip_special_tokens=True)
        for row, text in zip(active, texts, strict=True):
            stopped[row] = any(stop in text for stop in self.stop_strings) or bool(
                self.stop_when and self.stop_when(text)
            )
        return stopped
