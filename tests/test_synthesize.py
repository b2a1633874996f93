"""`babyhub data synthesize` with a real tiny local teacher: batching, filter counts, the card, kill and resume."""

import shutil
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
    utterance_complete,
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

    def recording(self, utterances, rows, seed):
        answers = generate(self, utterances, rows, seed)
        calls.append((rows[0] // 4, list(utterances), answers))
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
    answers = [first_utterance(a).lower() for a in raw]  # lower-cased by default, as the original
    reasons = [filter_reason(a, r["prompt"][6:], 1) for a, r in zip(answers, train, strict=True)]
    assert report.filtered == {k: reasons.count(k) for k in ("empty", "repeats_mother", "overlong")}
    assert report.rows + sum(report.filtered.values()) == report.total == 10
    assert report.filtered["overlong"] > 0  # max_words=1 must bite: the baby answers in several words
    rows = load_rows(out)
    kept = [(a, r) for a, r, why in zip(answers, train, reasons, strict=True) if why is None]
    assert rows == [{"prompt": r["prompt"], "chosen": "*CHI: " + a, "rejected": r["rejected"]} for a, r in kept]
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
        "| top_k | none |",
        "| seed | 3 ",
        "| prompt style | `completion` (the original's plain completion prompt) |",  # the baby has no chat template
        '| stops | `"\\n"`, `"Mother:"`, `"Child:"` ',
        "| answers | first utterance of the generation, lower-cased |",
        "| filter | on: rows below removed |",
        "| text format | `tags` ",
        SYSTEM_PROMPT + "\nMother says: {utterance}\nChild:",
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


def record_raw_answers(monkeypatch) -> list[str]:
    """Every raw answer the transformers teacher returns, in row order."""
    raw = []
    generate = TransformersTeacher.generate

    def recording(self, utterances, rows, seed):
        answers = generate(self, utterances, rows, seed)
        raw.extend(answers)
        return answers

    monkeypatch.setattr(TransformersTeacher, "generate", recording)
    return raw


def test_the_original_recipe_keeps_every_row_plain_and_lower_cased(tiny_baby, small_train_dir, tmp_path, monkeypatch):
    raw = record_raw_answers(monkeypatch)
    out = tmp_path / "original"
    report = synthesize_preferences(
        small_train_dir,
        str(tiny_baby),
        out,
        limit=9,
        batch_size=4,
        max_words=1,  # would filter most rows: with the filter off they are counted, and kept
        prompt_style="completion",
        filter_rows=False,
        text_format="plain",
        progress=False,
    )
    train = load_rows(small_train_dir)[:9]
    rows = load_rows(out)
    assert report.rows == report.total == len(rows) == 9 and report.filtered["overlong"] > 0
    assert rows == [
        {
            "prompt": r["prompt"].removeprefix("*MOT: "),
            "chosen": first_utterance(a).lower(),
            "rejected": r["rejected"].removeprefix("*CHI: "),
        }
        for a, r in zip(raw, train, strict=True)
    ]
    assert not any("*" in value for row in rows for value in row.values())
    text = (out / "README.md").read_text(encoding="utf-8")
    for part in (
        "| prompt style | `completion` (the original's plain completion prompt) |",
        "| filter | off: every row kept, aligned 1:1 with the training rows |",
        "| text format | `plain` (plain utterances, no speaker tags) |",
        "| filter | rows that would have been removed (kept: no filter) |",
        f"| overlong | {report.filtered['overlong']} |",
        "**9** of 9 rows kept.",
    ):
        assert part in text, part
    # The prompt the teacher continued is the original's plain text, after the tokenizer's own BOS.
    teacher = load_teacher("transformers", str(tiny_baby), prompt_style="completion")
    utterance = train[0]["prompt"].removeprefix("*MOT: ")
    assert teacher.tokenizer.decode(teacher.encode(utterance)) == (
        f"<s>{SYSTEM_PROMPT}\nMother says: {utterance}\nChild:"
    )
    # A plain split cannot be re-tagged: the speakers are gone.
    with pytest.raises(BabyhubError, match="has no speaker tags, so its rows cannot be written with them"):
        synthesize_preferences(out, str(tiny_baby), tmp_path / "tagged", text_format="tags", progress=False)


def test_rows_do_not_depend_on_the_batch_size(tiny_baby, small_train_dir, tmp_path):
    # Each row samples with its own seed: batches of 3 and of 5 give the same rows (as shards of a run would).
    kwargs = dict(limit=10, seed=5, filter_rows=False, progress=False)
    synthesize_preferences(small_train_dir, str(tiny_baby), tmp_path / "b3", batch_size=3, **kwargs)
    synthesize_preferences(small_train_dir, str(tiny_baby), tmp_path / "b5", batch_size=5, **kwargs)
    assert load_rows(tmp_path / "b3") == load_rows(tmp_path / "b5")


def test_chat_style_goes_through_the_chat_template(tiny_baby, small_train_dir, tmp_path):
    from transformers import AutoTokenizer

    with pytest.raises(BabyhubError, match="has no chat template, so it cannot be prompted in the chat style"):
        load_teacher("transformers", str(tiny_baby), prompt_style="chat")
    chat_baby = tmp_path / "chat-baby"
    shutil.copytree(tiny_baby, chat_baby)
    tokenizer = AutoTokenizer.from_pretrained(chat_baby)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[child]"
    tokenizer.save_pretrained(chat_baby)
    teacher = load_teacher("transformers", str(chat_baby))  # auto: the template is there, so chat
    assert teacher.prompt_style == "chat"
    assert teacher.tokenizer.decode(teacher.encode("look !")) == (
        f"[system] {SYSTEM_PROMPT}\n[user] Mother says: look !\nChild:\n[child]"
    )
    out = tmp_path / "chat"
    # The baby never saw this template and answers nothing useful: keep the rows to read the card.
    report = synthesize_preferences(small_train_dir, str(chat_baby), out, limit=4, filter_rows=False, progress=False)
    text = (out / "README.md").read_text(encoding="utf-8")
    assert (
        report.prompt_style == "chat"
        and "| prompt style | `chat` (the chat template's system + user messages) |" in text
    )
    assert "System message:" in text and '`"Mother says:"`' in text


@pytest.mark.parametrize(
    ("generated", "stops_early"),
    [
        (' "Yes, a big dog." Can I pet it?', True),
        ("I want the ball! Mother: no", True),
        ("no more bath... ok? fine", True),
        ("Wow!! That's cool. Really.", True),
        ("look Mommy: a bird. And more", False),  # cut at the label: the first utterance has no sentence end
        ("it is red\nMother says: what?", False),  # the newline is a stop string of its own
    ],
)
def test_generation_stops_only_where_the_kept_utterance_cannot_change(generated, stops_early):
    # Every prefix at which generation would stop already has the final first utterance.
    stops = [i for i in range(len(generated) + 1) if utterance_complete(generated[:i])]
    assert all(first_utterance(generated[:i]) == first_utterance(generated) for i in stops)
    assert bool(stops) == stops_early and (not stops or stops[0] < len(generated))
