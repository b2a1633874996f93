"""`babyhub data synthesize` with a real tiny local teacher: batching, filter counts, the card, kill and resume."""

import signal
import subprocess
import sys
import time
import types

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard

from hub_tools.cli import main
from hub_tools.data.synthesize import (
    SYSTEM_PROMPT,
    TransformersTeacher,
    filter_reason,
    first_utterance,
    load_teacher,
    repeats_mother,
    synthesize_preferences,
)
from hub_tools.errors import BabyhubError


def load_rows(folder) -> list[dict]:
    return datasets.load_dataset(str(folder))["train"].to_list()


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        (" I want the ball!\nMother says: no", "I want the ball !"),
        (' "Yes, a big dog." Can I pet it?', "Yes , a big dog ."),
        ("look Mommy: a bird", "look"),
        ("a truck *MOT: where", "a truck"),
        ("   \n", ""),
        ("no more bath", "no more bath"),
    ],
)
def test_first_utterance(generated, expected):
    assert first_utterance(generated) == expected


@pytest.mark.parametrize(
    ("answer", "mother", "reason"),
    [
        ("", "what is that ?", "empty"),
        ("? !", "what is that ?", "empty"),
        ("what is that ?", "what is that ?", "repeats_mother"),
        ("yes I want a cookie .", "do you want a cookie ?", "repeats_mother"),  # run of 3, 3/5 of the answer
        ("hi .", "hi .", "repeats_mother"),  # her utterance is shorter than 3 words: all of it
        ("I want a cookie please and then a nap .", "do you want a cookie ?", None),  # run of 3 < half of 9
        ("look at the dog .", "look .", None),  # 1 of 4 words
        ("it is red .", "is it red ?", None),  # no shared run of 3
        ("one two three four five six seven eight nine ten eleven !", "count for me .", "overlong"),
    ],
)
def test_filter_rules(answer, mother, reason):
    assert filter_reason(answer, mother, max_words=10) == reason
    assert repeats_mother(answer, mother) == (reason == "repeats_mother")


def test_synthesize_batches_filters_and_writes_the_card(tiny_baby, small_train_dir, tmp_path, monkeypatch):
    calls = []
    generate = TransformersTeacher.generate

    def recording(self, utterances, batch_index, seed):
        answers = generate(self, utterances, batch_index, seed)
        calls.append((batch_index, list(utterances), answers))
        return answers

    monkeypatch.setattr(TransformersTeacher, "generate", recording)
    out = tmp_path / "child-dpo-preferences-synthetic"
    report = synthesize_preferences(
        small_train_dir, str(tiny_baby), out, limit=10, batch_size=4, seed=3, max_words=1, progress=False
    )
    train = load_rows(small_train_dir)[:10]
    # batching: rows [0,4), [4,8), [8,10) in order, each utterance without its speaker tag
    assert [(i, len(u)) for i, u, _ in calls] == [(0, 4), (1, 4), (2, 2)]
    assert [u for _, batch, _ in calls for u in batch] == [r["prompt"].removeprefix("*MOT: ") for r in train]
    # filters: the counts are those of the teacher's actual answers, and kept + filtered = asked
    raw = [a for _, _, answers in calls for a in answers]
    reasons = [filter_reason(first_utterance(a), r["prompt"][6:], 1) for a, r in zip(raw, train, strict=True)]
    assert report.filtered == {k: reasons.count(k) for k in ("empty", "repeats_mother", "overlong")}
    assert report.rows + sum(report.filtered.values()) == report.total == 10
    assert report.filtered["overlong"] > 0  # max_words=1 must bite: the baby answers in several words
    rows = load_rows(out)
    kept = [(a, r) for a, r, why in zip(raw, train, reasons, strict=True) if why is None]
    assert rows == [
        {"prompt": r["prompt"], "chosen": "*CHI: " + first_utterance(a), "rejected": r["rejected"]} for a, r in kept
    ]
    # the card records teacher, revision, backend, prompt, sampling, seed and filter counts, and round-trips
    text = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "synthetic" in meta["tags"] and meta["configs"][0]["data_files"][0]["split"] == "train"
    for part in (
        f"| teacher | `{tiny_baby.name} (local folder)` |",
        f"| teacher revision | `{report.teacher_revision}` |",
        "| backend | `transformers` |",
        "| temperature | 0.7 |",
        "| top_p | 0.9 |",
        "| max new tokens | 30 |",
        "| seed | 3 ",
        SYSTEM_PROMPT,
        "Mother says: {utterance}",
        f"| overlong | {report.filtered['overlong']} |",
        f"| empty | {report.filtered['empty']} |",
        "more than 1 words",
    ):
        assert part in text, part
    assert report.teacher_revision.startswith("local-sha256:") and str(tiny_baby.parent) not in text
    assert str(DatasetCard.load(out / "README.md")) == text
    assert not (tmp_path / f".{out.name}.partial").exists()


def test_killed_run_resumes_with_the_same_rows(tiny_baby, small_train_dir, tmp_path):
    args = dict(limit=24, batch_size=4, seed=1)
    out = tmp_path / "resumed"
    answers = tmp_path / ".resumed.partial" / "answers.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "hub_tools",
        "data",
        "synthesize",
        "--train",
        str(small_train_dir),
        "--teacher",
        str(tiny_baby),
        "--out",
        str(out),
        "--limit",
        "24",
        "--batch-size",
        "4",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill -9 as soon as two of the six batches are saved
    while not (answers.exists() and answers.read_bytes().count(b"\n") >= 2):
        assert proc.poll() is None, f"synthesize ended before it could be killed: {proc.stderr.read().decode()}"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = answers.read_bytes().count(b"\n")
    assert 2 <= done < 6 and not out.exists()
    with open(answers, "ab") as handle:  # as if the kill had hit in the middle of writing a batch
        handle.write(b'{"batch": %d, "answers": ["half' % done)

    with pytest.raises(BabyhubError, match=r"batch_size differ\): rerun with the same settings.*--restart"):
        synthesize_preferences(small_train_dir, str(tiny_baby), out, limit=24, batch_size=3, seed=1, progress=False)
    resumed = synthesize_preferences(small_train_dir, str(tiny_baby), out, progress=False, **args)
    assert resumed.resumed_batches == done and resumed.batches == 6
    reference = synthesize_preferences(
        small_train_dir, str(tiny_baby), tmp_path / "uninterrupted", progress=False, **args
    )
    assert reference.resumed_batches == 0
    assert load_rows(out) == load_rows(tmp_path / "uninterrupted")
    assert resumed.filtered == reference.filtered


def test_optional_backends_fail_with_instructions(monkeypatch, small_train_dir, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(BabyhubError, match=r"pip install 'babyhub\[vllm\]'"):
        load_teacher("vllm", "some/teacher")
    with pytest.raises(BabyhubError, match=r"pip install 'babyhub\[openai\]'"):
        load_teacher("openai", "gpt-x")
    # installed but not configured: the key must come from the environment
    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=object))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BabyhubError, match="OPENAI_API_KEY, which is not set"):
        load_teacher("openai", "gpt-x")
    out = tmp_path / "synthetic"
    code = main(
        [
            "data",
            "synthesize",
            "--train",
            str(small_train_dir),
            "--teacher",
            "x/y",
            "--backend",
            "vllm",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and "babyhub[vllm]" in capsys.readouterr().err and not out.exists()
