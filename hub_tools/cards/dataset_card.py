"""Dataset cards for babyhub's datasets, rendered from the Jinja templates in `dataset_cards/`: what a card
says is shaped here, in one place (metadata, the made-up-sample mark, the prose of the
preference splits), and the templates lay it out.

The YAML header is never written by hand: it comes from a typed `DatasetCardData`, which
`DatasetCard.from_template` serialises into the template's `{{ card_data }}`. The card is then passed once
through `DatasetCard(str(card))`, so the file we write is already in the canonical form huggingface_hub
produces, and `DatasetCard.load(path)` gives back exactly the same text.

A new card field: a value in `build_card_data` (metadata) or a keyword of `render_dataset_card` (prose) and its
place in the template.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from hub_tools import __version__
from hub_tools.dialogue import join_turns
from hub_tools.paths import DATASET_CARDS, require_dir

# TalkBank distributes CHILDES under CC BY-NC-SA 3.0; derived data keeps that licence.
DEFAULT_LICENSE = "cc-by-nc-sa-3.0"
# babyhub's hand-written sample is its own work, under babyhub's licence.
MADE_UP_LICENSE = "apache-2.0"
BASE_TAGS = ["dpo", "childes", "babylm"]
MADE_UP_TAG = "made-up-sample"
PREFERENCES_TEMPLATE = "child_dpo_preferences.md"

CITATION = """\
@inproceedings{padovani-bunzeck-etal-2025-dialogue,
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
}

@book{macwhinney-2000-childes,
  title = {The {CHILDES} Project: Tools for Analyzing Talk},
  author = {MacWhinney, Brian},
  edition = {3rd},
  year = {2000},
  publisher = {Lawrence Erlbaum Associates},
  address = {Mahwah, NJ}
}"""


def size_category(num_rows: int) -> str:
    """The Hub's `size_categories` bucket for a number of rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, label in bounds:
        if num_rows < bound:
            return label
    return "n>1M"


def build_card_data(
    *,
    pretty_name: str,
    num_rows: int,
    source_datasets: list[str] | None = None,
    extra_tags: list[str] | None = None,
    license: str | None = None,
    data_file: str = "data/train-*",
    made_up: bool = False,
) -> DatasetCardData:
    """Typed card metadata for a one-split (`train`) dataset whose rows are in `data_file` (a path or pattern).

    A `made_up` dataset (built from babyhub's hand-written sample, not CHILDES) says so in its name and tags,
    and has the sample's licence and source (`original`) unless `license` / `source_datasets` are given.
    """
    tags = BASE_TAGS + list(extra_tags or [])
    if made_up:
        pretty_name += " — made-up sample"
        tags.append(MADE_UP_TAG)
    return DatasetCardData(
        language="en",
        license=license or (MADE_UP_LICENSE if made_up else DEFAULT_LICENSE),
        pretty_name=pretty_name,
        task_categories=["text-generation"],
        size_categories=size_category(num_rows),
        source_datasets=source_datasets or (["original"] if made_up else ["extended|childes"]),
        tags=tags,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_file}]}],
    )


def example_lines(rows: list[dict], limit: int = 3) -> list[str]:
    """The first rows as one-line JSON objects, for a card's example block."""
    return [json.dumps(row, ensure_ascii=False) for row in rows[:limit]]


def render_dataset_card(template_name: str, card_data: DatasetCardData, **fields) -> DatasetCard:
    """Render `dataset_cards/<template_name>` with the card data and fields; returns the canonical card."""
    template = require_dir(DATASET_CARDS) / template_name
    fields.setdefault("citation", CITATION)
    fields.setdefault("babyhub_version", __version__)
    card = DatasetCard.from_template(card_data, template_path=str(template), **fields)
    # One pass through the parser gives the canonical YAML, so save -> load is the identity.
    return DatasetCard(str(card))


def write_card(card: DatasetCard, folder: Path) -> Path:
    """Write the card as folder/README.md (UTF-8, the card's own line endings)."""
    path = Path(folder) / "README.md"
    path.write_text(str(card), encoding="utf-8", newline="")
    return path


# ------------------------------------------------------------------------------------ the preference splits
def matched_on(path: Path, *, made_up: bool = False) -> str:
    """How the rejected answers of a minimal-pair CSV were length-matched, told by its file name."""
    name = path.name.lower()
    if name.startswith("tok_"):
        return "length of the child answer in subword tokens"
    if name.startswith("len_") or made_up:
        return "length of the child answer in words"
    return "as given by the source file"


def render_preference_card(
    role: str,
    rows: list[dict],
    source: Path,
    *,
    made_up: bool,
    rows_read: int,
    rows_description: str,
    token_matched: bool,
    train_rows: int,
    text_format: str,
    sha256: str,
    skipped: dict[str, int],
    leakage=None,
    family: list[str],
    data_file: str,
) -> DatasetCard:
    """The card of one split of the preference family (`role` "training" or "evaluation") built from `source`
    (`made_up`: babyhub's hand-written sample); `leakage` is the split's `preferences.Leakage`, if measured."""
    data = build_card_data(
        pretty_name=f"Child DPO preferences ({role}, {'token' if token_matched else 'word'}-length-matched)",
        num_rows=len(rows),
        data_file=data_file,
        made_up=made_up,
    )
    summary = (
        f"Dialogue minimal pairs for Direct Preference Optimization of baby language models: for each caregiver turn "
        f"(`prompt`), the child's real answer (`chosen`) and a length-matched child answer taken from elsewhere "
        f"(`rejected`). This is the {role} split of the family."
    )
    use = (
        "Fine-tuning small language models trained on child-directed speech (BabyLM-style) with DPO, e.g. with TRL's "
        "`DPOTrainer`."
        if role == "training"
        else "Evaluating models on dialogue minimal pairs: a model should prefer the real answer to the mismatched "
        "one given the caregiver turn. Not for training."
    )
    example = rows[0] if rows else {"prompt": "*MOT: what is that ?", "chosen": "*CHI: a ball ."}
    return render_dataset_card(
        PREFERENCES_TEMPLATE,
        data,
        made_up=made_up,
        summary=summary,
        source_file=source.name,
        rows_read=rows_read,
        source_sha256=sha256,
        matched_on=matched_on(source, made_up=made_up),
        train_rows=train_rows,
        rows_description=rows_description,
        num_rows=len(rows),
        family=family,
        text_format=text_format,
        joined_example=join_turns(example["prompt"], example["chosen"]),
        examples=example_lines(rows),
        skipped=skipped,
        leakage=leakage,
        intended_use=use,
    )
