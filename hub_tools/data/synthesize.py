"""A synthetic DPO split: a teacher LLM writes the chosen child answers.

    babyhub data synthesize --train build/data/child-dpo-preferences --teacher Qwen/Qwen2.5-0.5B-Instruct \\
        --out build/data/child-dpo-preferences-synthetic [--backend transformers|vllm|openai] [--limit 100]

For every training row the teacher gets the prompt of the communicative-baby work (SYSTEM_PROMPT, then
`Mother says: <utterance>` / `Child:`), samples an answer (temperature 0.7, top_p 0.9, 30 new tokens) and
the first utterance of it becomes `chosen`; `rejected` stays the row's real mismatched child answer.
Answers that are empty, repeat the mother (see `repeats_mother`) or are overlong are filtered and counted.

Resumable: the raw answers of each finished batch are appended to `.<out>.partial/answers.jsonl` beside the
output. Batch i always holds rows [i*batch_size, (i+1)*batch_size) and is sampled with a seed derived from
(seed, i), so a run that is killed and started again continues after the last finished batch and ends with
the same rows as an uninterrupted run. The dataset folder itself appears only when every batch is done.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hub_tools.dialogue import CHILD_TAG, speaker_of, strip_tag
from hub_tools.errors import BabyhubError

SYSTEM_PROMPT = (
    "You are a young child having a conversation with your mother. When your mother says something, you should "
    "answer as a typical kind and natural-sounding child. Do NOT repeat her words. Instead, give a new, relevant "
    "answer that shows understanding. Keep it short and child-like."
)
USER_TEMPLATE = "Mother says: {utterance}\nChild:"
BACKENDS = ("transformers", "vllm", "openai")
DEFAULT_MAX_WORDS = 20
# An answer repeats the mother when it shares a run of at least REPEAT_MIN_RUN consecutive words with her
# utterance (fewer if hers is shorter) and that run is at least REPEAT_MIN_SHARE of the answer's words.
REPEAT_MIN_RUN = 3
REPEAT_MIN_SHARE = 0.5
FILTERS = ("empty", "repeats_mother", "overlong")
# Generation stops at a newline or when the teacher starts another speaker's turn.
STOP_STRINGS = ["\n", "Mother:", "Mother says:", "Child:"]
_SPEAKER_LABEL = re.compile(r"(\*[A-Z]{2,4}:|\b(?:Mother|Mom|Mommy|Mum|Child|Kid)(?: says)?\s*:)", re.IGNORECASE)
_FIRST_UTTERANCE = re.compile(r"^(.*?[.!?]+)[\"'”’]*(?=\s|$)")
_QUOTES = "\"'*“”‘’"
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 30


@dataclass
class SynthesisReport:
    out_dir: Path
    rows: int  # rows kept
    total: int  # prompts asked
    filtered: dict[str, int]
    teacher: str
    teacher_revision: str
    backend: str
    batches: int
    resumed_batches: int
    seconds: float

    def summary(self) -> str:
        dropped = ", ".join(f"{k}: {v}" for k, v in self.filtered.items())
        resumed = f", resumed after {self.resumed_batches} finished batches" if self.resumed_batches else ""
        return (
            f"wrote {self.out_dir}: {self.rows:,} of {self.total:,} rows kept (filtered {dropped}); teacher "
            f"{self.teacher}@{self.teacher_revision} via {self.backend}, {self.batches} batches{resumed}, "
            f"{self.seconds:.1f} s"
        )


# ---------------------------------------------------------------------------------------------- text rules


def build_messages(utterance: str) -> list[dict[str, str]]:
    """The chat the teacher sees for one caregiver utterance (without its speaker tag)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_TEMPLATE.format(utterance=utterance)},
    ]


def first_utterance(generated: str) -> str:
    """The child's first utterance in a generation, in CHILDES spacing (`I want it .`).

    Cut at the first newline or speaker label, keep the first sentence, drop quotes/asterisks around it, and
    separate the punctuation from the words as CHILDES transcripts (and the rejected answers) do.
    """
    text = generated.split("\n", 1)[0]
    text = _SPEAKER_LABEL.split(text, maxsplit=1)[0]
    text = text.strip().strip(_QUOTES).strip()
    match = _FIRST_UTTERANCE.match(text)
    if match:
        text = match.group(1).strip(_QUOTES)
    text = re.sub(r"\s*([,.!?]+)", r" \1", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _longest_shared_run(a: list[str], b: list[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def repeats_mother(answer: str, mother: str) -> bool:
    """True when the answer copies the mother: see REPEAT_MIN_RUN and REPEAT_MIN_SHARE."""
    a, m = words(answer), words(mother)
    if not a or not m:
        return False
    run = _longest_shared_run(a, m)
    return run >= min(REPEAT_MIN_RUN, len(m)) and run >= REPEAT_MIN_SHARE * len(a)


def filter_reason(answer: str, mother: str, max_words: int) -> str | None:
    """Why an answer is dropped (one of FILTERS), or None to keep it."""
    if not words(answer):
        return "empty"
    if repeats_mother(answer, mother):
        return "repeats_mother"
    if len(words(answer)) > max_words:
        return "overlong"
    return None


# ---------------------------------------------------------------------------------------------- backends


def batch_seed(seed: int, batch_index: int) -> int:
    """The sampling seed of one batch: fixed by (seed, batch), so a resumed run samples what the first would have."""
    return (seed * 1_000_003 + batch_index) % (2**31)


class TransformersTeacher:
    """Any local or Hub causal LM through transformers: batched, left-padded sampling on one device."""

    name = "transformers"

    def __init__(self, teacher: str, *, revision: str | None, device: str, sampling: Sampling):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(teacher, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(teacher, revision=revision, dtype=torch.float32)
        except OSError as err:
            raise BabyhubError(
                f"cannot load the teacher {teacher!r} (revision {revision or 'default'}): {err}. Pass a local model "
                "folder or a Hub id reachable through HF_ENDPOINT."
            ) from err
        self.model.to(device).eval()
        self.device, self.sampling, self.torch = device, sampling, torch
        self.tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.revision = revision or _teacher_revision(teacher, self.model)

    def prompt_text(self, utterance: str) -> str:
        messages = build_messages(utterance)
        if self.chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # A base model without a chat template reads the same words as plain text.
        return f"{messages[0]['content']}\n\n{messages[1]['content']}"

    def generate(self, utterances: list[str], batch_index: int, seed: int) -> list[str]:
        texts = [self.prompt_text(u) for u in utterances]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.chat)
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        self.torch.manual_seed(batch_seed(seed, batch_index))
        with self.torch.no_grad():
            output = self.model.generate(
                **encoded,
                do_sample=True,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_new_tokens=self.sampling.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def _teacher_revision(teacher: str, model) -> str:
    """A Hub model's commit, or for a local folder a fingerprint of its weights."""
    commit = getattr(model.config, "_commit_hash", None)
    folder = Path(teacher)
    if folder.is_dir():
        from hub_tools.data.preferences import file_sha256

        weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
        return f"local-sha256:{file_sha256(*weights)[:16]}"
    return commit or "unknown"


class VllmTeacher:
    """vLLM (GPU): one request per prompt with its own seed, so results do not depend on batching."""

    name = "vllm"

    def __init__(self, teacher: str, *, revision: str | None, sampling: Sampling):
        try:
            from vllm import LLM
        except ImportError as err:
            raise BabyhubError(
                "the vllm backend needs vLLM: install it with `pip install 'babyhub[vllm]'` (Linux + GPU), or use "
                "--backend transformers."
            ) from err
        self.llm = LLM(model=teacher, revision=revision)
        self.sampling = sampling
        self.revision = revision or "default"

    def generate(self, utterances: list[str], batch_index: int, seed: int) -> list[str]:
        from vllm import SamplingParams

        base = batch_seed(seed, batch_index)
        params = [
            SamplingParams(
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_tokens=self.sampling.max_new_tokens,
                stop=STOP_STRINGS,
                seed=base * 1_000 + i,
            )
            for i in range(len(utterances))
        ]
        outputs = self.llm.chat([build_messages(u) for u in utterances], params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]


class OpenAITeacher:
    """Any OpenAI-compatible chat endpoint; the key comes from OPENAI_API_KEY and is never written anywhere."""

    name = "openai"

    def __init__(self, teacher: str, *, revision: str | None, sampling: Sampling, api_base: str | None):
        try:
            from openai import OpenAI
        except ImportError as err:
            raise BabyhubError(
                "the openai backend needs the openai client: install it with `pip install 'babyhub[openai]'`."
            ) from err
        if not os.environ.get("OPENAI_API_KEY"):
            raise BabyhubError(
                "the openai backend reads its key from OPENAI_API_KEY, which is not set: export it (and "
                "OPENAI_BASE_URL or --api-base for another OpenAI-compatible endpoint)."
            )
        self.client = OpenAI(base_url=api_base or os.environ.get("OPENAI_BASE_URL"))
        self.teacher, self.sampling = teacher, sampling
        self.revision = revision or "endpoint-default"

    def generate(self, utterances: list[str], batch_index: int, seed: int) -> list[str]:
        base = batch_seed(seed, batch_index)
        answers = []
        for i, utterance in enumerate(utterances):
            response = self.client.chat.completions.create(
                model=self.teacher,
                messages=build_messages(utterance),
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_tokens=self.sampling.max_new_tokens,
                stop=STOP_STRINGS[:4],  # the API accepts at most four stop sequences
                seed=base * 1_000 + i,
            )
            answers.append(response.choices[0].message.content or "")
        return answers


def load_teacher(backend: str, teacher: str, *, revision=None, device="cpu", sampling=Sampling(), api_base=None):
    """The generation backend; vllm and openai are optional extras and fail with install instructions."""
    if backend == "transformers":
        return TransformersTeacher(teacher, revision=revision, device=device, sampling=sampling)
    if backend == "vllm":
        return VllmTeacher(teacher, revision=revision, sampling=sampling)
    if backend == "openai":
        return OpenAITeacher(teacher, revision=revision, sampling=sampling, api_base=api_base)
    raise BabyhubError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")


# ---------------------------------------------------------------------------------------------- resumable state


@dataclass
class RunState:
    """The `.partial` folder beside the output: settings of the run + one JSON line of raw answers per batch."""

    folder: Path
    settings: dict
    batches: list[list[str]] = field(default_factory=list)

    @property
    def answers_file(self) -> Path:
        return self.folder / "answers.jsonl"

    @classmethod
    def open(cls, folder: Path, settings: dict, *, restart: bool) -> "RunState":
        if restart and folder.exists():
            shutil.rmtree(folder)
        state = cls(folder, settings)
        settings_file = folder / "settings.json"
        if not settings_file.exists():
            folder.mkdir(parents=True, exist_ok=True)
            settings_file.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
            state.answers_file.touch()
            return state
        saved = json.loads(settings_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            raise BabyhubError(
                f"{folder} holds an interrupted run with other settings ({', '.join(changed)} differ): rerun with "
                "the same settings to resume it, or pass --restart to discard it."
            )
        state.batches = state._read_batches()
        return state

    def _read_batches(self) -> list[list[str]]:
        batches, good_bytes = [], 0
        with open(self.answers_file, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    break  # a line torn by a kill: that batch is generated again
                if not line.endswith(b"\n") or record.get("batch") != len(batches):
                    break
                batches.append(record["answers"])
                good_bytes += len(line)
        with open(self.answers_file, "r+b") as handle:
            handle.truncate(good_bytes)
        return batches

    def append(self, answers: list[str]) -> None:
        line = json.dumps({"batch": len(self.batches), "answers": answers}, ensure_ascii=False) + "\n"
        with open(self.answers_file, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())  # a finished batch survives a kill
        self.batches.append(answers)


# ---------------------------------------------------------------------------------------------- the split


def read_train_rows(train: str | Path) -> list[dict]:
    """The rows of a preference dataset's `train` split: a local folder (Hub layout) or a Hub dataset id."""
    from hub_tools.data.preferences import read_preferences

    source = str(train)
    if not Path(source).is_dir() and source.count("/") != 1:
        raise BabyhubError(
            f"--train {source}: no such folder; pass a folder built by `babyhub data build` or a Hub id."
        )
    return read_preferences(source).to_list()


def _train_is_made_up(train: str | Path) -> bool:
    from huggingface_hub import DatasetCard

    card = Path(train) / "README.md"
    return card.is_file() and "made-up-sample" in (DatasetCard.load(card).data.tags or [])


def synthesize_preferences(
    train_dir: str | Path,
    teacher: str,
    out_dir: str | Path,
    *,
    backend: str = "transformers",
    revision: str | None = None,
    batch_size: int = 16,
    seed: int = 0,
    limit: int | None = None,
    max_words: int = DEFAULT_MAX_WORDS,
    sampling: Sampling = Sampling(),
    device: str = "cpu",
    api_base: str | None = None,
    restart: bool = False,
    progress: bool = True,
) -> SynthesisReport:
    """Write a child-dpo-preferences-synthetic folder at out_dir; see the module docstring."""
    from tqdm.auto import tqdm

    from hub_tools.data.preferences import data_file_for, install_folders, write_dataset_folder

    start = time.perf_counter()
    if batch_size < 1 or max_words < 1 or (limit is not None and limit < 1):
        raise BabyhubError("--batch-size, --max-words and --limit must be at least 1.")
    out_dir = Path(out_dir)
    # 1. the training rows and the caregiver utterances the teacher answers
    rows = read_train_rows(train_dir)[:limit]
    if not rows:
        raise BabyhubError(f"--train {train_dir}: the split `train` is empty.")
    utterances = [strip_tag(row["prompt"]) for row in rows]
    # 2. the teacher (fails early with install instructions for a missing optional backend)
    model = load_teacher(backend, teacher, revision=revision, device=device, sampling=sampling, api_base=api_base)
    # 3. resume the batches an earlier run finished, if its settings are the same
    settings = {
        "train_fingerprint": hashlib.sha256(json.dumps(utterances).encode("utf-8")).hexdigest(),
        "rows": len(rows),
        "teacher": teacher,
        "teacher_revision": model.revision,
        "backend": backend,
        "batch_size": batch_size,
        "seed": seed,
        "sampling": asdict(sampling),
        "system_prompt": SYSTEM_PROMPT,
        "user_template": USER_TEMPLATE,
    }
    state = RunState.open(out_dir.parent / f".{out_dir.name}.partial", settings, restart=restart)
    resumed = len(state.batches)
    # 4. generate the remaining batches, saving each as soon as it is done
    starts = range(0, len(rows), batch_size)
    with tqdm(
        total=len(rows),
        initial=min(resumed * batch_size, len(rows)),
        desc="synthesize",
        unit="prompt",
        disable=not progress,
    ) as bar:
        for index in range(resumed, len(starts)):
            batch = utterances[starts[index] : starts[index] + batch_size]
            state.append(model.generate(batch, index, seed))
            bar.update(len(batch))
    # 5. first utterance of each answer, filtered and counted
    raw = [answer for batch in state.batches for answer in batch]
    filtered = dict.fromkeys(FILTERS, 0)
    synthetic = []
    for row, utterance, generated in zip(rows, utterances, raw, strict=True):
        answer = first_utterance(generated)
        reason = filter_reason(answer, utterance, max_words)
        if reason:
            filtered[reason] += 1
            continue
        chosen = f"{CHILD_TAG} {answer}" if speaker_of(row["prompt"]) else answer
        synthetic.append({"prompt": row["prompt"], "chosen": chosen, "rejected": row["rejected"]})
    if not synthetic:
        raise BabyhubError(
            f"every one of the {len(rows)} teacher answers was filtered ({filtered}): check the teacher, or raise "
            f"--max-words. The raw answers are kept in {state.folder}."
        )
    # 6. write the dataset with its card beside the output, rename into place, drop the state
    report = SynthesisReport(
        out_dir, len(synthetic), len(rows), filtered, teacher, model.revision, backend, len(starts), resumed, 0.0
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        data_file = data_file_for(synthetic)
        card = render_synthetic_card(
            report,
            settings,
            synthetic,
            train_dir,
            max_words,
            made_up=_train_is_made_up(train_dir),
            data_file=data_file,
        )
        write_dataset_folder(staging / out_dir.name, synthetic, card, data_file)
        install_folders(staging, out_dir.parent, [out_dir.name])  # an older build goes with the staging folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(state.folder)
    report.seconds = time.perf_counter() - start
    return report


def teacher_label(teacher: str) -> str:
    """How a card names the teacher: a Hub id as is, a local folder by its name only (never someone's paths)."""
    return f"{Path(teacher).name} (local folder)" if Path(teacher).is_dir() else teacher


def render_synthetic_card(report, settings, rows, train_dir, max_words, *, made_up=False, data_file="data/train-*"):
    """The card of a synthetic split: teacher, revision, backend, prompt, sampling, seed, filter counts."""
    from hub_tools.cards.dataset_card import build_card_data, example_lines, render_dataset_card

    data = build_card_data(
        pretty_name="Child DPO preferences (synthetic chosen answers)" + (" — made-up sample" if made_up else ""),
        num_rows=len(rows),
        source_datasets=["extended|childes"] if not made_up else ["original"],
        extra_tags=["synthetic"] + (["made-up-sample"] if made_up else []),
        data_file=data_file,
    )
    return render_dataset_card(
        "child_dpo_preferences_synthetic.md",
        data,
        made_up=made_up,
        report=report,
        teacher_label=teacher_label(report.teacher),
        train_name=Path(str(train_dir)).name,
        settings=settings,
        system_prompt=SYSTEM_PROMPT,
        user_template=USER_TEMPLATE,
        max_words=max_words,
        repeat_min_run=REPEAT_MIN_RUN,
        repeat_min_share=REPEAT_MIN_SHARE,
        examples=example_lines(rows),
    )
