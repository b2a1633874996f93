"""Dialogue minimal pairs: does a language model prefer the child's real answer to a caregiver's turn?

An `evaluate` metric (and a Space). The scoring is babyhub's scorer (`scoring.py`) and the interval its
statistics (`stats.py`), both placed beside this file by babyhub's Space bundle and linked here in a checkout,
so the accuracy and its 95 % interval equal `babyhub eval minpairs`'s for every method.
"""

import datasets
import evaluate

from .dialogue import TURN_SEPARATOR
from .scoring import LEGACY_METHODS, METHODS, Scorer, compare_pairs, default_workers, score_minimal_pairs
from .stats import accuracy_interval

# Every method the metric accepts: the scorer's, and the legacy one that reproduces published numbers.
ALL_METHODS = (*METHODS, *LEGACY_METHODS)

_CITATION = """\
@inproceedings{padovani-etal-2025-dialogue,
  title = {Dialogue Is Not Enough to Make a Communicative {BabyLM} (But Neither Is Developmentally Inspired
           Reinforcement Learning)},
  author = {Padovani, Francesca and Bunzeck, Bastian and Ali, Manar and Momen, Omar and Bisazza, Arianna and
            Buschmeier, Hendrik and Zarrie{\\ss}, Sina},
  booktitle = {Proceedings of the First BabyLM Workshop},
  pages = {421--435},
  year = {2025},
  address = {Suzhou, China},
  publisher = {Association for Computational Linguistics},
}
"""

_DESCRIPTION = """\
Dialogue minimal pairs (CHILDES): each pair is a caregiver turn (`prompt`, e.g. `*MOT: what is that ?`), the
child's real answer (`chosen`, `*CHI: it looks like a gun .`) and a length-matched child utterance taken from
elsewhere (`rejected`). A causal language model gets a pair right when it scores the real answer strictly
higher. Accuracy is the share of pairs it gets right; ties (equal scores) count as wrong and are reported.
"""

_KWARGS_DESCRIPTION = """
Args:
    prompt (`list` of `str`): caregiver turns, with their CHILDES speaker tag (`*MOT: ...`).
    chosen (`list` of `str`): the child's real answers (`*CHI: ...`).
    rejected (`list` of `str`): the length-matched answers from elsewhere (`*CHI: ...`).
    model_id (`str`): a causal LM on the Hub (or a local folder), e.g. `bbunzeck/another-llama`.
    revision (`str`, optional): branch, tag or commit of the model, e.g. `checkpoint-2000`.
    method (`str`, default `"sequence_mean"`): how a pair is scored.
        - `sequence_mean`: mean token log-probability of `prompt + " " + answer` (the DPO write-up's numbers);
        - `sequence_sum_bow`: summed log-probability of the same text with the beginning-of-word correction
          (the later evaluation script's numbers);
        - `answer_sum` / `answer_mean`: log-probability of the answer given the prompt, summed / averaged;
        - `sequence_sum_bow_legacy`: as `sequence_sum_bow` with minicons 0.3.8's beginning-of-word correction
          (to reproduce numbers computed with it).
    batch_size (`int`, default 256): texts per forward pass (on a CPU, whole batches run on one worker per core).
    device (`str`, default `"cpu"`): torch device.
    return_margins (`bool`, default `False`): also return each pair's score(chosen) - score(rejected).
Returns:
    accuracy (`float`): share of pairs whose chosen answer scores strictly higher, in [0, 1].
    ci95_low, ci95_high (`float`): the accuracy's 95 % interval (Wilson's score interval: closed form, inside
        [0, 1], close to 95 % coverage even for few pairs); on 7,548 pairs it is about ± 1.1 points wide.
    n (`int`): number of pairs.
    ties (`int`): pairs whose two answers score exactly the same (counted as wrong).
    margins (`list` of `float`, only with `return_margins=True`): per-pair score differences.
Examples:
    Load the metric (from a checkout: `evaluate.load("spaces/dialogue_minpairs")`) and name a model:

    >>> import evaluate
    >>> metric = evaluate.load("NS/dialogue_minpairs")  # doctest: +SKIP
    >>> baby = "bbunzeck/another-llama"  # doctest: +SKIP

    Two identical answers always tie, whatever the model, and a tie is not a correct pair; one pair says little,
    so the 95 % interval of its accuracy is wide:

    >>> result = metric.compute(prompt=["*MOT: what is that ?"], chosen=["*CHI: a dog ."],
    ...                         rejected=["*CHI: a dog ."], model_id=baby)
    >>> {key: round(value, 4) for key, value in result.items()}
    {'accuracy': 0.0, 'ci95_low': 0.0, 'ci95_high': 0.7935, 'n': 1, 'ties': 1}

    Margins are score(chosen) - score(rejected): swapping the answers flips every margin and the accuracy:

    >>> pairs = {"prompt": ["*MOT: what is that ?", "*MOT: pull the string ."],
    ...          "chosen": ["*CHI: it looks like a gun .", "*CHI: and where do they hook it ?"],
    ...          "rejected": ["*CHI: you do it like that .", "*CHI: do you know what it was ?"]}
    >>> forward = metric.compute(**pairs, model_id=baby, method="answer_sum", return_margins=True)
    >>> swapped = metric.compute(prompt=pairs["prompt"], chosen=pairs["rejected"], rejected=pairs["chosen"],
    ...                          model_id=baby, method="answer_sum", return_margins=True)
    >>> [abs(a + b) < 1e-4 for a, b in zip(forward["margins"], swapped["margins"])]  # equal up to float error
    [True, True]
    >>> forward["accuracy"] + swapped["accuracy"]
    1.0

    The interval flips with the accuracy (Wilson's interval is symmetric in right and wrong):

    >>> round(forward["ci95_low"] + swapped["ci95_high"], 12), round(forward["ci95_high"] + swapped["ci95_low"], 12)
    (1.0, 1.0)
"""

# One scorer per model, revision and device: `compute` is called many times by a Space or a sweep.
_SCORERS = {}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DialogueMinpairs(evaluate.Metric):
    """Accuracy of a causal LM on dialogue minimal pairs (real child answer vs a length-matched one)."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "prompt": datasets.Value("string"),
                    "chosen": datasets.Value("string"),
                    "rejected": datasets.Value("string"),
                }
            ),
            reference_urls=["https://github.com/fpadovani/communicative_baby_dpo"],
        )

    def _compute(
        self,
        prompt,
        chosen,
        rejected,
        model_id=None,
        revision=None,
        method="sequence_mean",
        batch_size=256,
        device="cpu",
        return_margins=False,
    ):
        if not model_id:
            raise ValueError("dialogue_minpairs needs model_id=<a causal LM on the Hub or a local folder>")
        if method not in ALL_METHODS:
            raise ValueError(f"method must be one of {', '.join(ALL_METHODS)}, got {method!r}")
        key = (model_id, revision, device)
        if key not in _SCORERS:
            _SCORERS[key] = Scorer.from_pretrained(
                model_id, revision, device=device, batch_size=batch_size, workers=default_workers(device)
            )
        scorer = _SCORERS[key]
        scorer.batch_size = batch_size
        chosen_scores, rejected_scores = score_minimal_pairs(
            scorer, prompt, chosen, rejected, method=method, separator=TURN_SEPARATOR
        )
        result = compare_pairs(chosen_scores, rejected_scores, margins=return_margins, outcomes=True)
        interval = accuracy_interval(result.pop("correct"))
        output = {"accuracy": result.pop("accuracy"), "ci95_low": interval.ci95_low, "ci95_high": interval.ci95_high}
        return {**output, **result}
