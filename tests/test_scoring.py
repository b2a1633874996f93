"""The scorer against minicons (the original work's scorer) on a real tiny baby, real eval rows and BLiMP lines."""

import ast
import itertools
import math
import sys
import warnings

import pytest
import torch

from hub_tools import scoring
from hub_tools.data.minpairs import read_minimal_pairs
from hub_tools.dialogue import join_turns
from hub_tools.scoring import Scorer
from tests.conftest import BLIMP_DIR, LEN_PAIRS

TOLERANCE = 1e-4  # the agreement bound, per sentence
N_PAIRS = 96


@pytest.fixture(scope="module")
def baby(tiny_baby):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_baby), AutoTokenizer.from_pretrained(tiny_baby)


@pytest.fixture(scope="module")
def scorer(baby):
    model, tokenizer = baby
    return Scorer(model, tokenizer, batch_size=16)  # small batches: several batches, several pad widths


@pytest.fixture(scope="module")
def reference(baby):
    from minicons.scorer import IncrementalLMScorer

    model, tokenizer = baby
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return IncrementalLMScorer(model, tokenizer=tokenizer, device="cpu")


@pytest.fixture(scope="module")
def eval_pairs():
    pairs = read_minimal_pairs(LEN_PAIRS).pairs
    return pairs[18000 : 18000 + N_PAIRS]  # the published evaluation split starts at row 18,000


@pytest.fixture(scope="module")
def blimp_lines():
    lines = []
    for name in ("adjunct_island", "determiner_noun_agreement_1", "principle_A_case_1"):
        lines += (BLIMP_DIR / f"{name}.txt").read_text().splitlines()[:24]
    return lines


def _minicons_reduction(reduction):
    return (lambda x: x.sum(0).item()) if reduction == "sum" else (lambda x: x.mean(0).item())


def _assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    worst = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    assert worst < TOLERANCE, f"largest difference to minicons: {worst:.2e}"


@pytest.mark.parametrize(("reduction", "bow"), [("mean", False), ("sum", True), ("sum", False), ("mean", True)])
def test_sequence_scores_agree_with_minicons(scorer, reference, eval_pairs, blimp_lines, reduction, bow):
    chosen = [join_turns(p.prompt, p.chosen) for p in eval_pairs]
    rejected = [join_turns(p.prompt, p.rejected) for p in eval_pairs]
    texts = chosen + rejected + blimp_lines
    expected = reference.sequence_score(texts, reduction=_minicons_reduction(reduction), bow_correction=bow)
    _assert_close(scorer.sequence_scores(texts, reduction=reduction, bow_correction=bow), expected)
    # Packed pairs (shared prompt computed once) give the same numbers as texts scored one by one.
    ours_a, ours_b = scorer.pair_sequence_scores(chosen, rejected, reduction=reduction, bow_correction=bow)
    _assert_close(ours_a + ours_b, expected[: 2 * len(eval_pairs)])
    good, bad = blimp_lines[0::2], blimp_lines[1::2]
    ours_good, ours_bad = scorer.pair_sequence_scores(good, bad, reduction=reduction, bow_correction=bow)
    _assert_close(ours_good, expected[2 * len(eval_pairs) :: 2])
    _assert_close(ours_bad, expected[2 * len(eval_pairs) + 1 :: 2])


@pytest.mark.parametrize(("reduction", "bow"), [("sum", False), ("mean", False), ("sum", True)])
def test_conditional_scores_agree_with_minicons(scorer, reference, eval_pairs, reduction, bow):
    prompts = [p.prompt for p in eval_pairs]
    chosen, rejected = [p.chosen for p in eval_pairs], [p.rejected for p in eval_pairs]
    red = _minicons_reduction(reduction)
    expected_chosen = reference.conditional_score(prompts, chosen, reduction=red, bow_correction=bow)
    expected_rejected = reference.conditional_score(prompts, rejected, reduction=red, bow_correction=bow)
    _assert_close(scorer.conditional_scores(prompts, chosen, reduction=reduction, bow_correction=bow), expected_chosen)
    ours_chosen, ours_rejected = scorer.pair_conditional_scores(
        prompts, chosen, rejected, reduction=reduction, bow_correction=bow
    )
    _assert_close(ours_chosen, expected_chosen)
    _assert_close(ours_rejected, expected_rejected)


def test_conditional_score_is_the_difference_of_sequence_sums(scorer, eval_pairs):
    # log p(answer | prompt) = log p(prompt answer) - log p(prompt), when the prompt's tokens are a prefix.
    pair = eval_pairs[0]
    full, prompt_only = scorer.sequence_scores([join_turns(pair.prompt, pair.chosen), pair.prompt], reduction="sum")
    (conditional,) = scorer.conditional_scores([pair.prompt], [pair.chosen])
    assert conditional == pytest.approx(full - prompt_only, abs=1e-4)
    assert conditional < 0


def test_identical_texts_tie_exactly(scorer, eval_pairs):
    texts = [join_turns(p.prompt, p.chosen) for p in eval_pairs[:8]]
    a, b = scorer.pair_sequence_scores(texts, texts, reduction="sum", bow_correction=True)
    assert a == b
    a, b = scorer.pair_conditional_scores(
        [p.prompt for p in eval_pairs[:8]], [p.chosen for p in eval_pairs[:8]], [p.chosen for p in eval_pairs[:8]]
    )
    assert a == b


def test_every_attention_path_gives_the_same_scores(tiny_baby, scorer, eval_pairs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chosen = [join_turns(p.prompt, p.chosen) for p in eval_pairs[:24]]
    rejected = [join_turns(p.prompt, p.rejected) for p in eval_pairs[:24]]
    expected = scorer.pair_sequence_scores(chosen, rejected, bow_correction=True)
    eager = AutoModelForCausalLM.from_pretrained(tiny_baby, attn_implementation="eager")
    eager_scorer = Scorer(eager, AutoTokenizer.from_pretrained(tiny_baby), batch_size=7)
    for ours, theirs in zip(
        eager_scorer.pair_sequence_scores(chosen, rejected, bow_correction=True), expected, strict=True
    ):
        _assert_close(ours, theirs)
    eager_scorer._packable = False  # the fallback for attention kernels without 4-D masks: one text per row
    for ours, theirs in zip(
        eager_scorer.pair_sequence_scores(chosen, rejected, bow_correction=True), expected, strict=True
    ):
        _assert_close(ours, theirs)


@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_empty_or_whitespace_text_is_refused(scorer, bad):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty or whitespace-only"):
        scorer.sequence_scores(["*CHI: hi .", bad])
    with pytest.raises(ValueError, match=r"answers\[0\] is empty or whitespace-only"):
        scorer.conditional_scores(["*MOT: hi ."], [bad])
    with pytest.raises(ValueError, match=r"texts_b\[0\] is empty"):
        scorer.pair_sequence_scores(["*CHI: hi ."], [bad])


def test_bad_arguments_are_refused(scorer):
    with pytest.raises(ValueError, match="reduction must be one of sum, mean"):
        scorer.sequence_scores(["*CHI: hi ."], reduction="max")
    with pytest.raises(ValueError, match="same length"):
        scorer.conditional_scores(["*MOT: hi .", "*MOT: yes ."], ["*CHI: no ."])
    with pytest.raises(TypeError, match="list of strings"):
        scorer.sequence_scores("*CHI: hi .")


def test_text_longer_than_the_context_is_truncated_from_the_left(baby, eval_pairs):
    model, tokenizer = baby
    scorer = Scorer(model, tokenizer)
    scorer.max_length = 12  # a short context, so real rows overflow it
    long_text = " ".join(join_turns(p.prompt, p.chosen) for p in eval_pairs[:3])
    ids = tokenizer(long_text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) > 12
    with pytest.warns(UserWarning, match=r"truncated from the left, keeping the BOS token"):
        (score,) = scorer.sequence_scores([long_text], reduction="sum")
    # Independent check: BOS + the last 11 tokens, scored by the model directly.
    kept = torch.tensor([[ids[0]] + ids[-11:]])
    with torch.inference_mode():
        logprobs = model(kept).logits.log_softmax(-1)[0, :-1].gather(1, kept[0, 1:, None])
    assert score == pytest.approx(logprobs.sum().item(), abs=1e-4)
    # An answer that cannot fit on its own is refused rather than scored in part.
    with pytest.raises(ValueError, match=r"answers\[0\] alone has"):
        scorer.conditional_scores(["*MOT: look ."], [long_text])


def test_scores_do_not_depend_on_batch_size_or_workers(baby, scorer, eval_pairs):
    texts = [join_turns(p.prompt, p.rejected) for p in eval_pairs[:20]]
    one_by_one = Scorer(*baby, batch_size=1).sequence_scores(texts)
    _assert_close(scorer.sequence_scores(texts), one_by_one)
    assert all(math.isfinite(s) and s < 0 for s in one_by_one)
    # Batches spread over two single-threaded workers: same scores, and torch's thread count is restored.
    threads = torch.get_num_threads()
    _assert_close(Scorer(*baby, batch_size=4, workers=2).sequence_scores(texts), one_by_one)
    assert torch.get_num_threads() == threads


def test_scoring_module_imports_only_torch_and_transformers():
    # scoring.py is shipped alone beside the metric and the chat Space, whose environment has no hub_tools.
    tree = ast.parse(open(scoring.__file__).read())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - sys.stdlib_module_names == {"torch", "transformers"}, imported


def test_rust_tokenizer_path_gives_the_wrappers_ids_and_scores(baby, scorer, eval_pairs):
    model, tokenizer = baby
    texts = [join_turns(p.prompt, p.chosen) for p in eval_pairs[:16]] + ["hi", "*CHI: a ."]
    assert scorer._backend is not None  # the tiny baby's tokenizer is fast: its Rust backend is called directly
    assert scorer._token_ids(texts) == tokenizer(texts)["input_ids"]
    tokenizer(texts, padding=True)  # leaves the shared backend padding (as minicons' calls do): no padded ids here
    assert scorer._token_ids(texts) == tokenizer(texts)["input_ids"]
    assert scorer._backend is not None
    wrapped = Scorer(model, tokenizer, batch_size=16)
    wrapped._backend = None  # the path of slow tokenizers and of backends with their own truncation or padding
    for bow in (False, True):
        _assert_close(
            scorer.sequence_scores(texts, bow_correction=bow), wrapped.sequence_scores(texts, bow_correction=bow)
        )


def test_short_texts_score_without_running_their_last_token(baby, scorer):
    # Without the word-start correction a text's last token is not run through the model; the scores of texts of
    # one or two scored tokens, packed in pairs or alone, still match the model run on the whole text.
    model, tokenizer = baby
    texts, others = ["hi", "*CHI: no", "yes ."], ["hi there", "*CHI: no", "no"]
    expected = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.inference_mode():
            logprobs = model(ids).logits.log_softmax(-1)[0, :-1].gather(1, ids[0, 1:, None])
        expected.append(logprobs.mean().item())
    _assert_close(scorer.sequence_scores(texts), expected)
    _assert_close(scorer.pair_sequence_scores(texts, others)[0], expected)


def _alone(model, ids: list[int]) -> float:
    """Summed log-probability of ids[1:] with the model run on this one text (no packing, no batching)."""
    tensor = torch.tensor([ids])
    with torch.inference_mode():
        return model(tensor).logits.log_softmax(-1)[0, :-1].gather(1, tensor[0, 1:, None]).sum().item()


@pytest.mark.parametrize("bow", [False, True])
def test_texts_that_begin_alike_share_a_row_and_score_as_alone(baby, reference, bow):
    # Texts that are prefixes of others, duplicates, several answers to one prompt and prompts that begin alike:
    # they are packed as one prefix tree per row, and each still scores exactly as minicons scores it alone.
    model, tokenizer = baby
    texts = [
        "*MOT: what is that ? *CHI: a dog .",
        "*MOT: what is that ? *CHI: a dog . a big dog .",
        "*MOT: what is that ?",
        "*MOT: what is that ? *CHI: a cat .",
        "*MOT: what is that ? *CHI: a dog .",
        "*MOT: what",
        "*MOT: where is the ball ? *CHI: there .",
        "*MOT: what is this ? *CHI: ball .",
        "*CHI: no .",
    ]
    scorer = Scorer(model, tokenizer, batch_size=64)
    rows = scorer._layout(scorer._encode_texts(texts, "texts"), drop=0 if bow else 1)
    assert len(rows) == 1 and len(rows[0].ids) < sum(len(ids) for ids in tokenizer(texts)["input_ids"]) / 2
    # Texts longer than a row (ROW_WIDTH places) get rows of their own; one that only repeats such a text joins it.
    long = " ".join(["*MOT: what is that ? *CHI: a dog . *MOT: a big dog ? *CHI: yes ."] * 8)
    texts += [long, long + " *MOT: good !", long]
    assert len(tokenizer(long)["input_ids"]) > scoring.ROW_WIDTH
    expected = reference.sequence_score(texts, reduction=lambda x: x.sum(0).item(), bow_correction=bow)
    _assert_close(scorer.sequence_scores(texts, reduction="sum", bow_correction=bow), expected)
    # Rows that are full start a new tree: a narrow row width gives the same scores.
    narrow = Scorer(model, tokenizer, batch_size=3)  # at most 3 texts per row and per batch
    _assert_close(narrow.sequence_scores(texts, reduction="sum", bow_correction=bow), expected)


def test_texts_without_a_shared_first_token_form_separate_trees(baby, scorer):
    # A tokenizer without BOS gives texts whose first tokens differ: each is the root of its own tree in the row,
    # and must not see the tokens of the trees before it.
    model, tokenizer = baby
    ids = [
        tokenizer(text, add_special_tokens=False)["input_ids"]
        for text in ("*MOT: look at the dog .", "*MOT: look at the cat .", "the dog is big .", "the dog .", "yes .")
    ]
    assert len({i[0] for i in ids}) > 1
    texts = [scoring._Text(i, 1) for i in ids]
    (row,) = scorer._layout(texts, drop=1)
    assert row.depth.count(0) == len({i[0] for i in ids})  # one root per distinct first token
    ours = scorer._score(texts, "sum", False)
    _assert_close(ours, [_alone(model, i) for i in ids])


def test_scoring_pauses_the_garbage_collector_and_restores_it(scorer):
    import gc

    seen = []
    scorer.sequence_scores(["*CHI: hi ."], progress=lambda n: seen.append(gc.isenabled()))
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        scorer.sequence_scores(["*CHI: hi ."])
        assert not gc.isenabled()  # a caller's own choice is left as it was
    finally:
        gc.enable()


# ------------------------------------------------------------------------- minicons 0.3.8's legacy correction
def _minicons_038_scores(model, tokenizer, texts, starts=None):
    """Summed log-probabilities with minicons 0.3.8's word-start correction, written out token by token.

    From 0.3.8's `compute_stats`: the word-start tokens are the vocabulary entries that begin with the whole token
    of a space; token i (of the ids after the first) gains log P(word start) after it when it ends a word (the next
    token starts one, or it is the last) and loses log P(word start) at its place when it starts a word or does not
    end one. Scoring starts at ids[start] (a conditional score's answer), the first token after BOS by default.
    """
    space = tokenizer.convert_ids_to_tokens(tokenizer(" ", add_special_tokens=False)["input_ids"][0])
    starts_word = {i for token, i in tokenizer.get_vocab().items() if token[:1] == space}
    bow_ids = torch.tensor(sorted(starts_word))
    scores = []
    for n, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        with torch.inference_mode():
            logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        p_word_start = logp[:, bow_ids].logsumexp(-1)  # after each place
        idx = ids[1:]
        total = 0.0
        for i in range((starts[n] if starts else 1) - 1, len(idx)):
            ends_word = i == len(idx) - 1 or idx[i + 1] in starts_word
            total += logp[i, idx[i]].item()
            if ends_word:
                total += p_word_start[i + 1].item()
            if idx[i] in starts_word or not ends_word:
                total -= p_word_start[i].item()
        scores.append(total)
    return scores


def test_legacy_correction_reproduces_minicons_038(baby, scorer, eval_pairs, blimp_lines):
    model, tokenizer = baby
    lowered = [line.lower() for line in blimp_lines]  # the original lower-cased BLiMP
    dialogues = [join_turns(p.prompt, p.chosen) for p in eval_pairs[:32]]
    texts = lowered + dialogues
    _assert_close(
        scorer.sequence_scores(texts, reduction="sum", bow_correction="legacy"),
        _minicons_038_scores(model, tokenizer, texts),
    )
    # Packed pairs, and the minimal-pair method that the CLI offers, give the same numbers.
    good, bad = scorer.pair_sequence_scores(lowered[0::2], lowered[1::2], reduction="sum", bow_correction="legacy")
    _assert_close(good + bad, _minicons_038_scores(model, tokenizer, lowered[0::2] + lowered[1::2]))
    pairs = eval_pairs[:16]
    chosen, rejected = scoring.score_minimal_pairs(
        scorer, [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs],
        method="sequence_sum_bow_legacy",
    )  # fmt: skip
    expected = _minicons_038_scores(model, tokenizer, [join_turns(p.prompt, p.chosen) for p in pairs])
    _assert_close(chosen, expected)
    # A conditional score starts at the answer: the prompt's own token count decides where, as in minicons.
    prompts, answers = [p.prompt for p in pairs], [p.rejected for p in pairs]
    starts = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    _assert_close(
        scorer.conditional_scores(prompts, answers, bow_correction="legacy"),
        _minicons_038_scores(model, tokenizer, [f"{p} {a}" for p, a in zip(prompts, answers, strict=True)], starts),
    )


def test_legacy_and_current_corrections_differ_on_words_of_several_tokens(baby, scorer, blimp_lines):
    # The two corrections agree on a text whose words are one token each and differ once a word has several.
    model, tokenizer = baby
    lowered = [line.lower() for line in blimp_lines]
    current = scorer.sequence_scores(lowered, reduction="sum", bow_correction=True)
    legacy = scorer.sequence_scores(lowered, reduction="sum", bow_correction="legacy")
    space = tokenizer.convert_ids_to_tokens(tokenizer(" ", add_special_tokens=False)["input_ids"][0])
    for text, a, b in zip(lowered, current, legacy, strict=True):
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])[1:]
        pieces = [t.startswith(space) for t in tokens]
        several = any(not a and not b for a, b in itertools.pairwise(pieces))  # two pieces in a row inside a word
        first_starts = pieces[0]  # 0.3.8 corrects the first scored token too
        if not several and not first_starts:
            assert a == pytest.approx(b, abs=TOLERANCE), text
    assert max(abs(a - b) for a, b in zip(current, legacy, strict=True)) > 0.1


def test_sequence_methods_name_their_settings(scorer, eval_pairs):
    assert set(scoring.SEQUENCE_METHODS) == {m for m in [*scoring.METHODS, *scoring.LEGACY_METHODS] if "sequence" in m}
    assert scoring.SEQUENCE_METHODS["sequence_sum_bow_legacy"] == ("sum", scoring.LEGACY_BOW)
    with pytest.raises(ValueError, match="bow_correction must be True, False or 'legacy'"):
        scorer.sequence_scores(["*CHI: hi ."], bow_correction="old")
    with pytest.raises(ValueError, match="method must be one of .*sequence_sum_bow_legacy, got 'sum'"):
        scoring.score_minimal_pairs(scorer, ["*MOT: a ."], ["*CHI: b ."], ["*CHI: c ."], method="sum")


class _SpaceIsTwoCharacters:
    """A tokenizer whose space is the token `<sp>`: 0.3.8 would find no word-start token (`<` never starts `<sp>`)."""

    bos_token, eos_token = "<s>", "</s>"
    added_tokens_decoder = {}

    def __call__(self, text, add_special_tokens=True):
        return type("Encoding", (), {"input_ids": [2]})()

    def convert_ids_to_tokens(self, ids):
        return {0: "<s>", 1: "</s>", 2: "<sp>", 3: "ab"}[ids]

    def get_vocab(self):
        return {"<s>": 0, "</s>": 1, "<sp>": 2, "ab": 3}


def test_legacy_correction_is_refused_where_minicons_038_is_undefined():
    current = scoring._word_start_tokens(_SpaceIsTwoCharacters(), 4)
    assert current is not None and current[1].tolist() == [0, 1, 2]  # first character `<`: the current rule
    with pytest.raises(ValueError, match="minicons 0.3.8's beginning-of-word correction is undefined for this"):
        scoring._word_start_tokens(_SpaceIsTwoCharacters(), 4, legacy=True)


def test_compare_pairs_gives_each_pairs_outcome():
    result = scoring.compare_pairs([-1.0, -2.0, -3.0, -4.0], [-2.0, -2.0, -1.0, -5.0], outcomes=True)
    assert result["correct"] == [True, False, False, True]  # a tie is not correct
    assert result["accuracy"] == sum(result["correct"]) / result["n"] == 0.5
    assert "correct" not in scoring.compare_pairs([-1.0], [-2.0])  # the default output is unchanged
