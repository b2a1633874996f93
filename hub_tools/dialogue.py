"""The text convention shared by data, training, scoring and the Space.

A dialogue is a sequence of turns `*TAG: utterance`, joined by one space, e.g.
`*MOT: what is that ? *CHI: it looks like a gun .`. The DPO datasets keep the caregiver turn as
`prompt` and the child turns as `chosen`/`rejected`; wherever a model sees prompt and answer
together (bootstrap corpus, DPO concatenation, scoring, chat) they are joined with TURN_SEPARATOR,
so the baby is trained and scored on exactly one format.
"""

import re

TURN_SEPARATOR = " "
# CHILDES speaker codes are three upper-case letters (MOT, FAT, INV, CHI, ...): treat the tag as data.
SPEAKER_TAG = re.compile(r"^\*([A-Z]{2,4}):\s?")
CHILD_TAG = "*CHI:"
MOTHER_TAG = "*MOT:"


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
