"""Prefix-cached generation: greedy output equal to `generate`, per-row seeded sampling, HF's nucleus, stops."""

import pytest
import torch
from transformers.generation.logits_process import TopPLogitsWarper

from hub_tools.data import generation
from hub_tools.data.generation import (
    PrefixCachedGenerator,
    Sampling,
    _pick,
    choose_tokens,
    common_prefix_length,
    row_seed,
)

PREFIX = "You are a young child having a conversation with your mother. Keep it short and child-like.\n"
UTTERANCES = ["what is that ?", "pull the string .", "I think they just throw it on the side .", "look", "no more"]


@pytest.fixture(scope="module")
def baby():
    """An untrained tiny Llama (weights wide enough for clear argmaxes) and a byte-level BPE built in a blink."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(prompt_texts() * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def prompt_texts(utterances=UTTERANCES) -> list[str]:
    return [f"{PREFIX}Mother says: {u}\nChild:" for u in utterances]


def plain_generate(model, tokenizer, texts, max_new_tokens) -> list[list[int]]:
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(
            **encoded, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
        )
    return out[:, encoded["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("pack_width", [256, 12], ids=["one-pack", "several-packs"])
def test_greedy_answers_equal_plain_generate_token_for_token(baby, pack_width, monkeypatch):
    monkeypatch.setattr(generation, "PACK_WIDTH", pack_width)  # 12: the suffixes run in several packed sequences
    model, tokenizer = baby
    texts = prompt_texts()
    ids = [tokenizer(t)["input_ids"] for t in texts]
    generator = PrefixCachedGenerator(model, tokenizer)
    ours = generator.generate(ids, [0] * len(ids), Sampling(temperature=0, max_new_tokens=20))
    plain = plain_generate(model, tokenizer, texts, 20)
    eos = tokenizer.eos_token_id
    assert common_prefix_length(ids) > 20  # the cache really holds a prefix
    for row, reference in zip(ours, plain, strict=True):
        assert row == reference[: len(row)]  # the same tokens, up to where the row stopped
        assert len(row) == 20 or row[-1] == eos  # and it stopped at its EOS or the token limit
    assert len({tuple(row) for row in ours}) > 1  # the rows really differ: the suffixes are seen
    # One row at a time, and a prefix given for the whole run, give the same answers.
    run = PrefixCachedGenerator(model, tokenizer, prefix_ids=ids[0][: common_prefix_length(ids)])
    for prompt, row in zip(ids, ours, strict=True):
        assert run.generate([prompt], [0], Sampling(temperature=0, max_new_tokens=20)) == [row]


def test_prompts_without_a_shared_prefix(baby):
    model, tokenizer = baby
    ids = [tokenizer(f"{u}\nChild:")["input_ids"][1:] for u in UTTERANCES]  # no BOS: they share nothing
    assert common_prefix_length(ids) == 0
    ours = PrefixCachedGenerator(model, tokenizer).generate(ids, [0] * 5, Sampling(temperature=0, max_new_tokens=8))
    width = max(len(i) for i in ids)
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    attention_mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=8,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    for row, reference in zip(ours, out[:, width:].tolist(), strict=True):
        assert row == reference[: len(row)]


def test_sampling_is_seeded_per_row_whatever_the_batch(baby):
    model, tokenizer = baby
    ids = [tokenizer(t)["input_ids"] for t in prompt_texts()]
    generator = PrefixCachedGenerator(model, tokenizer)
    seeds = [row_seed(7, row) for row in range(len(ids))]
    together = generator.generate(ids, seeds, Sampling(max_new_tokens=15))
    split = generator.generate(ids[:2], seeds[:2], Sampling(max_new_tokens=15))
    split += generator.generate(ids[2:], seeds[2:], Sampling(max_new_tokens=15))
    reversed_rows = generator.generate(ids[::-1], seeds[::-1], Sampling(max_new_tokens=15))[::-1]
    assert together == split == reversed_rows
    other_seed = generator.generate(ids, [row_seed(8, row) for row in range(len(ids))], Sampling(max_new_tokens=15))
    assert other_seed != together
    with pytest.raises(ValueError, match="5 prompts but 4 seeds"):
        generator.generate(ids, seeds[:4])


def test_row_seeds_are_fixed_by_seed_and_row():
    # Shards of a run on other processes must draw what one process draws: the scheme is pinned here.
    assert row_seed(0, 0) == row_seed(0, 0) != row_seed(0, 1) != row_seed(1, 0)
    assert 0 <= row_seed(123, 45_678) < 2**63
    assert row_seed(0, 0) == 6785046760242281598


def test_the_nucleus_is_the_one_transformers_keeps():
    torch.manual_seed(0)
    for width in (10, 1000):  # 1000 flat-ish tokens: a nucleus wider than the candidates, the full-sort path
        logits = torch.randn(6, width) * (3.0 if width == 10 else 0.3)
        kept = TopPLogitsWarper(top_p=0.9)(None, logits.clone()) > float("-inf")
        sampled = torch.stack(
            [choose_tokens(logits, torch.rand(6, dtype=torch.float64), Sampling()) for _ in range(300)]
        )
        scaled_kept = TopPLogitsWarper(top_p=0.9)(None, logits / 0.7) > float("-inf")
        assert scaled_kept.gather(1, sampled.T).all()  # never a token outside the nucleus (after temperature)
        assert kept.sum() > 0
    # The inverse CDF over the renormalised nucleus, by hand: probabilities .5 .3 .15 .05, top_p .9 keeps three.
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4)
    before = probs.cumsum(-1) - probs
    picked = _pick(probs, before, torch.tensor([0.1, 0.6, 0.9, 0.9999], dtype=torch.float64), 0.9)
    assert picked.tolist() == [0, 1, 2, 2]  # 0.6 x 0.95 = 0.57 falls in (0.5, 0.8]; never the fourth token


def test_a_stop_string_ends_a_row_at_the_token_that_completes_it(baby):
    model, tokenizer = baby
    ids = [tokenizer(t)["input_ids"] for t in prompt_texts()[:2]]
    greedy = Sampling(temperature=0, max_new_tokens=12)
    free = PrefixCachedGenerator(model, tokenizer).generate(ids, [0, 0], greedy)
    stop = tokenizer.decode(free[0][:3], skip_special_tokens=True)
    stopped = PrefixCachedGenerator(model, tokenizer, stop_strings=[stop]).generate(ids, [0, 0], greedy)
    assert stopped[0] == free[0][:3]
    assert stopped[1] == free[1][: len(stopped[1])]  # the other row goes on until it meets its own stop
