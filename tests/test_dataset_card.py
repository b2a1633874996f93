"""Dataset cards: rendered offline from dataset_cards/ templates, required metadata and prose, exact round-trip."""

import pytest
import yaml
from huggingface_hub import DatasetCard

from hub_tools.cards.dataset_card import build_card_data, render_dataset_card, size_category
from hub_tools.data.minpairs import SAMPLE_PAIRS, SAMPLE_TRAIN_ROWS
from hub_tools.data.preferences import EVAL_NAME, EVAL_TOKENS_NAME, TRAIN_NAME, build_preference_datasets

EXPECTED = {TRAIN_NAME: (18_000, "10K<n<100K"), EVAL_NAME: (7_548, "1K<n<10K"), EVAL_TOKENS_NAME: (7_520, "1K<n<10K")}


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_built_cards_have_the_metadata_and_prose_and_round_trip(preference_dirs, name):
    path = preference_dirs.splits[name].folder / "README.md"
    text = path.read_text(encoding="utf-8")
    rows, size = EXPECTED[name]
    meta = front_matter(text)
    assert meta["language"] == "en" and meta["license"] == "cc-by-nc-sa-3.0"
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == size
    assert {"dpo", "childes", "babylm"} <= set(meta["tags"]) and meta["source_datasets"] == ["extended|childes"]
    assert meta["pretty_name"].startswith("Child DPO preferences")
    (config,) = meta["configs"]
    (data_file,) = config["data_files"]
    assert data_file["split"] == "train" and (path.parent / data_file["path"]).is_file()
    # prose: source, rule, size, example, convention, validation, citation
    for part in (
        "CHILDES",
        "fpadovani/communicative_baby_dpo",
        "rows `[0, 18,000)`",
        f"| `train` | {rows:,} |",
        '{"prompt": "*MOT:',
        "`--format tags`",
        "No row in this split's range was skipped",
        "## Intended use",
        "@inproceedings{padovani-etal-2025-dialogue",
        "Made-up",
    ):
        assert (part in text) == (part != "Made-up"), part
    assert ("## Overlap with the training split" in text) == (name != TRAIN_NAME)
    # round trip: the file is already canonical
    loaded = DatasetCard.load(path)
    assert str(loaded) == text
    assert str(DatasetCard(str(loaded))) == text
    assert loaded.data.to_dict() == meta


def test_sample_cards_say_the_data_is_made_up(tmp_path):
    report = build_preference_datasets(SAMPLE_PAIRS, tmp_path / "demo", train_rows=SAMPLE_TRAIN_ROWS)
    for folder in (report.train, report.eval):
        text = (folder / "README.md").read_text(encoding="utf-8")
        meta = front_matter(text)
        assert "made-up-sample" in meta["tags"] and meta["pretty_name"].endswith("made-up sample")
        assert meta["license"] == "apache-2.0" and meta["source_datasets"] == ["original"]
        assert "**Made-up data.**" in text and "It is **not** CHILDES data" in text
        assert str(DatasetCard.load(folder / "README.md")) == text


def test_render_from_a_template_with_card_data():
    data = build_card_data(
        pretty_name="x", num_rows=5, source_datasets=["original"], data_file="data/train-abc.parquet"
    )
    card = render_dataset_card(
        "child_dpo_preferences.md",
        data,
        made_up=True,
        summary="S",
        source_file="f.csv",
        rows_read=7,
        source_sha256="0" * 64,
        matched_on="m",
        train_rows=3,
        rows_description="rows",
        num_rows=5,
        family=["a", "b"],
        text_format="plain",
        joined_example="hi there",
        examples=[],
        skipped={"tab_count": 2},
        leakage=None,
        intended_use="U",
    )
    assert card.data.configs[0]["data_files"][0]["path"] == "data/train-abc.parquet"
    assert card.data.size_categories == "n<1K"
    assert "| tab_count | 2 |" in card.text and "`--format plain`" in card.text and "`a`, `b`" in card.text
    assert str(DatasetCard(str(card))) == str(card)


@pytest.mark.parametrize(
    ("rows", "label"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (18_000, "10K<n<100K"), (2_000_000, "n>1M")]
)
def test_size_category(rows, label):
    assert size_category(rows) == label
