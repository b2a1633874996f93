"""The text convention shared by data, training, scoring and the Space.

A dialogue is a sequence of turns `*TAG: utterance`, joined by one space, e.g.
`*MOT: what is that ? *CHI: it looks like a gun .`. The DPO datasets keep the caregiver turn as
`prompt` and the child turns as `chosen`/`rejected`; wherever a model sees prompt and answer
together (bootstrap corpus, DPO concatenation, scoring, chat) they are joined with TURN_SEPARATOR,
so the baby is trained and scored on exactly one format.

The study's citation lives here too: the datasets' cards and the metric (which bundles this module) cite it alike.
"""

import re

TURN_SEPARATOR = " "
# CHILDES speaker codes are three upper-case letters (MOT, FAT, INV, CHI, ...): treat the tag as data.
SPEAKER_TAG = re.compile(r"^\*([A-Z]{2,4}):\s?")
CHILD_TAG = "*CHI:"
MOTHER_TAG = "*MOT:"

# The study babyhub reproduces (ACL Anthology key), cited by the dataset cards and the dialogue_minpairs metric.
STUDY_CITATION = """\
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
  eprint = {2510.20358},
  archivePrefix = {arXiv}
}"""


def join_turns(*turns: str) -> str:
    """Join turns (already tagged or plain) into one dialogue text."""
    return TURN_SEPARATOR.join(t.strip() for t in turns)


def speaker_of(turn: str) -> str | None:
    """The speaker code of a tagged turn (`MOT`), or None if the turn has no tag."""
    m = SPEAKER_TAG.match(turn.strip())
    return m.group(1) if m else None


def strip_tag(turn: str) -> str:
    """The utterance of a turn without its speaker tag."""
    return SPEAKER_TAG.sub("", turn.strip(), count=1).strip()
