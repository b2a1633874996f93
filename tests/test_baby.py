"""The bootstrapped baby: a real tokenizer and model, trained on training rows only, loadable by HF clients."""

import subprocess
import sys

import datasets
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hub_tools.dialogue import join_turns
from hub_tools.errors import BabyhubError
from hub_tools.training.baby import bootstrap_baby, read_bootstrap_texts


def test_tiny_baby_loads_with_special_tokens_and_about_a_million_parameters(tiny_baby):
    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    model = AutoModelForCausalLM.from_pretrained(tiny_baby)
    n = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n < 1.5e6
    assert tokenizer.bos_token and tokenizer.eos_token and tokenizer.pad_token
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    ids = tokenizer("*MOT: what is that ?")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    # Byte level: any text round-trips, even characters the corpus never had.
    assert tokenizer.decode(tokenizer("*CHI: naïve 🐶 !")["input_ids"], skip_special_tokens=True) == "*CHI: naïve 🐶 !"


def test_prompt_tokens_are_a_prefix_of_the_dialogue(tiny_baby, small_train_dir):
    # DPO tokenizes prompt and prompt + " " + answer separately: the first must be a prefix of the second.
    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    rows = datasets.load_dataset(str(small_train_dir))["train"].select(range(50))
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        full = tokenizer(join_turns(row["prompt"], row["chosen"]))["input_ids"]
        assert full[: len(prompt)] == prompt, row


def test_baby_learned_the_training_text(tiny_baby, small_train_dir):
    # Trained text is far more likely than the untrained init and than shuffled words.
    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    model = AutoModelForCausalLM.from_pretrained(tiny_baby)
    rows = datasets.load_dataset(str(small_train_dir))["train"].select(range(32))
    texts = [join_turns(r["prompt"], r["chosen"]) for r in rows]
    shuffled = [" ".join(reversed(t.split())) for t in texts]

    def loss(m, batch):
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with torch.no_grad():
            return m(**enc, labels=labels).loss.item()

    fresh = AutoModelForCausalLM.from_config(model.config)
    assert loss(model, texts) < loss(fresh, texts) - 2.0
    assert loss(model, texts) < loss(model, shuffled)


def test_card_describes_the_baby(tiny_baby):
    card = (tiny_baby / "README.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(tiny_baby)
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card
    assert "| steps | 60 |" in card
    assert "200 training rows" in card
    assert "*MOT: what is that ? *CHI:" in card
    assert "library_name: transformers" in card


def _write_dataset(folder, splits):
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        pd.DataFrame(rows).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def test_corpus_reads_only_the_train_split(tmp_path):
    row = {"prompt": "*MOT: where is the ball ?", "chosen": "*CHI: there .", "rejected": "*CHI: a cookie ."}
    secret = {"prompt": "*MOT: EVALONLY ?", "chosen": "*CHI: EVALONLY .", "rejected": "*CHI: EVALONLY !"}
    folder = _write_dataset(tmp_path / "prefs", {"train": [row] * 3, "test": [secret] * 3})
    texts, rows = read_bootstrap_texts(folder)
    assert rows == 3
    assert texts[:2] == ["*MOT: where is the ball ? *CHI: there .", "*CHI: a cookie ."]
    assert not any("EVALONLY" in t for t in texts)


def test_bad_datasets_and_outputs_are_refused_without_output(tmp_path, small_train_dir):
    no_col = _write_dataset(tmp_path / "nocol", {"train": [{"prompt": "*MOT: hi .", "chosen": "*CHI: hi ."}]})
    with pytest.raises(BabyhubError, match="rejected"):
        bootstrap_baby(no_col, tmp_path / "out1", max_steps=1, progress=False)
    empty = _write_dataset(tmp_path / "empty", {"train": [{"prompt": "*MOT: hi .", "chosen": " ", "rejected": "x"}]})
    with pytest.raises(BabyhubError, match="row 0 has an empty `chosen`"):
        bootstrap_baby(empty, tmp_path / "out2", max_steps=1, progress=False)
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
    with pytest.raises(BabyhubError, match="unknown baby size"):
        bootstrap_baby(small_train_dir, tmp_path / "out3", size="huge")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(BabyhubError, match="not empty"):
        bootstrap_baby(small_train_dir, tmp_path / "taken", max_steps=1, progress=False)
    assert (tmp_path / "taken" / "x").read_text() == "keep me"


def test_cli_bootstraps_a_loadable_baby(tmp_path, small_train_dir):
    out = tmp_path / "baby"
    cmd = [sys.executable, "-m", "hub_tools", "baby", "bootstrap", "--train", str(small_train_dir), "--out", str(out)]
    done = subprocess.run([*cmd, "--max-steps", "3", "--dataset-id", "me/prefs"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
    assert "datasets:\n- me/prefs" in (out / "README.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "not empty" in again.stderr
