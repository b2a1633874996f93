"""Dataset cards for babyhub's datasets, rendered from the Jinja templates in `dataset_cards/`.

The YAML header is never written by hand: it comes from a typed `DatasetCardData`, which
`DatasetCard.from_template` serialises into the template's `{{ card_data }}`. The card is then passed once
through `DatasetCard(str(card))`, so the file we write is already in the canonical form huggingface_hub
produces, and `DatasetCard.load(path)` gives back exactly the same text.
"""

import json
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from hub_tools import __version__
from hub_tools.paths import DATASET_CARDS, require_dir

# TalkBank distributes CHILDES under CC BY-NC-SA 3.0; derived data keeps that licence.
DEFAULT_LICENSE = "cc-by-nc-sa-3.0"
BASE_TAGS = ["dpo", "childes", "babylm"]

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
    source_datasets: list[str],
    extra_tags: list[str] | None = None,
    license: str = DEFAULT_LICENSE,
    data_file: str = "data/train-*",
) -> DatasetCardData:
    """Typed card metadata for a one-split (`train`) dataset whose rows are in `data_file` (a path or pattern)."""
    return DatasetCardData(
        language="en",
        license=license,
        pretty_name=pretty_name,
        task_categories=["text-generation"],
        size_categories=size_category(num_rows),
        source_datasets=source_datasets,
        tags=BASE_TAGS + list(extra_tags or []),
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
