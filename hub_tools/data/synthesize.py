"""A synthetic DPO split: a teacher LLM writes the chosen child answers.

    babyhub teacher fetch --out build/teacher    # SmolLM2-135M-Instruct, offline (hub_tools/data/teacher.py)
    babyhub data synthesize --train build/data/child-dpo-preferences --teacher build/teacher \\
        --out build/data/child-dpo-preferences-synthetic [--backend transformers|vllm|openai] [--limit 100]
    # the original recipe (a base model, its plain prompt, lower-cased, every row kept, no speaker tags):
    babyhub data synthesize ... --prompt-style completion --no-filter --format plain

For every training row the teacher gets the prompt of the communicative-baby work and samples an answer
(temperature 0.7, top_p 0.9, no top-k, 30 new tokens, as the original's vLLM run); the first utterance of it becomes
`chosen`; `rejected` stays the row's real mismatched child answer. Two prompt styles:

- `chat`: SYSTEM_PROMPT as the system message and `Mother says: <utterance>` / `Child:` as the user message,
  through the teacher's chat template (for instruct models such as SmolLM2-135M-Instruct);
- `completion`: the original's plain prompt for a base model, COMPLETION_TEMPLATE (the system text, then
  `\nMother says: <utterance>\nChild:`), stopping at `\n`, `Mother:` or `Child:`.

`auto` (the default) takes `chat` when the teacher has a chat template and `completion` otherwise. Answers are
lower-cased (as the original, and as CHILDES transcribes: a capitalised first word would tell the chosen answer
from the real one by its first letter); answers that are empty, repeat the mother (see `repeats_mother`) or are
overlong are filtered and counted, unless filtering is off (the original kept all 18,000 rows, aligned 1:1 with
the real training split). The rows keep the training split's text convention unless another is asked for (the
original's synthetic split is published without speaker tags).

The transformers backend generates with `hub_tools.data.generation.PrefixCachedGenerator`: the system prompt, the
same for every row, runs once per run and its KV cache serves every row.

Resumable and sharded: batch i always holds rows [i*batch_size, (i+1)*batch_size), and row r samples with its own
seed `row_seed(seed, r)`, so no row depends on which batches ran before it, in which run or on which process. The
raw answers of each finished batch are appended, as a line `{"batch": i, "answers": [...]}`, to a file of the
`.<out>.partial/` folder beside the output, so a run that is killed and started again generates only the batches
that are not done and ends with the rows of an uninterrupted run. The dataset folder itself appears only when every
batch is done.

On N processes (`torchrun --nproc_per_node N -m hub_tools data synthesize ...` on CPUs, `accelerate launch -m
hub_tools data synthesize ... --device cuda` on GPUs) the unfinished batches are dealt out by index, round robin;
each process loads the teacher and appends to its own file (`answers.jsonl` on the main process,
`answers.rank<r>.jsonl` on rank r), so each resumes on its own, and a run may be resumed with another number of
processes (every file is read). The main process puts the batches back in row order and writes the split, which
has the rows of a one-process run with the same seed; the other processes return None. An error on any process
ends every process with its message (see `hub_tools.distributed`). The vLLM backend spreads one teacher over GPUs
with `tensor_parallel_size` inside one process (vLLM starts its own workers) and is not sharded across launched
processes.
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

from hub_tools import distributed
from hub_tools.data.sampling import Sampling, row_seed
from hub_tools.dialogue import CHILD_TAG, speaker_of, strip_tag
from hub_tools.errors import BabyhubError

SYSTEM_PROMPT = (
    "You are a young child having a conversation with your mother. When your mother says something, you should "
    "answer as a typical kind and natural-sounding child. Do NOT repeat her words. Instead, give a new, relevant "
    "answer that shows understanding. Keep it short and child-like."
)
USER_TEMPLATE = "Mother says: {utterance}\nChild:"
# The original's prompt for a base model: the system text, then the exchange, as one plain text.
COMPLETION_TEMPLATE = SYSTEM_PROMPT + "\n" + USER_TEMPLATE
PROMPT_STYLES = ("auto", "chat", "completion")
BACKENDS = ("transformers", "vllm", "openai")
TEXT_FORMATS = ("tags", "plain")
DEFAULT_MAX_WORDS = 20
DEFAULT_BATCH_SIZE = 64
DEFAULT_SAMPLING = Sampling()  # the original's: temperature 0.7, top_p 0.9, no top-k, 30 new tokens
# An answer repeats the mother when it shares a run of at least REPEAT_MIN_RUN consecutive words with her
# utterance (fewer if hers is shorter) and that run is at least REPEAT_MIN_SHARE of the answer's words.
REPEAT_MIN_RUN = 3
REPEAT_MIN_SHARE = 0.5
FILTERS = ("empty", "repeats_mother", "overlong")
# Generation stops at a newline or when the teacher starts another speaker's turn: the original's stops for the
# completion prompt; a chat answer also stops at "Mother says:" (the user message's own words).
COMPLETION_STOPS = ("\n", "Mother:", "Child:")
STOP_STRINGS = ("\n", "Mother:", "Mother says:", "Child:")
_SPEAKER_LABEL = re.compile(r"(\*[A-Z]{2,4}:|\b(?:Mother|Mom|Mommy|Mum|Child|Kid)(?: says)?\s*:)", re.IGNORECASE)
_FIRST_UTTERANCE = re.compile(r"^(.*?[.!?]+)[\"'”’]*(?=\s|$)")
_QUOTES = "\"'*“”‘’"
_WORD = re.compile(r"[a-z0-9']+")


def stops_for(prompt_style: str) -> tuple[str, ...]:
    return COMPLETION_STOPS if prompt_style == "completion" else STOP_STRINGS


@dataclass(frozen=True)
class AnswerRules:
    """How the teacher's raw outputs become the rows of the split (step 5): the first utterance of each, lower-cased
    or not, checked by `filter_reason`, and the rows with a reason dropped or kept, in the split's text format."""

    max_words: int = DEFAULT_MAX_WORDS
    lowercase: bool = True
    filter_rows: bool = True  # False: rows with a filter reason are counted but kept
    text_format: str = "tags"

    def apply(self, rows: list[dict], utterances: list[str], raw: list[str]) -> tuple[list[dict], dict[str, int]]:
        """The synthetic rows (training row + the teacher's answer as `chosen`) and the count of each filter."""
        filtered = dict.fromkeys(FILTERS, 0)
        synthetic = []
        for row, utterance, generated in zip(rows, utterances, raw, strict=True):
            answer = first_utterance(generated)
            answer = answer.lower() if self.lowercase else answer
            reason = filter_reason(answer, utterance, self.max_words)
            if reason:
                filtered[reason] += 1
                if self.filter_rows:
                    continue
            if self.text_format == "tags":
                synthetic.append(
                    {"prompt": row["prompt"], "chosen": f"{CHILD_TAG} {answer}", "rejected": row["rejected"]}
                )
            else:
                synthetic.append(
                    {"prompt": strip_tag(row["prompt"]), "chosen": answer, "rejected": strip_tag(row["rejected"])}
                )
        return synthetic, filtered


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
    prompt_style: str = "chat"
    rules: AnswerRules = AnswerRules()  # how the answers were cut, cased and filtered (the card states them)
    processes: int = 1  # processes the batches were sharded over

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.filtered.items())
        kept = f"filtered {counts}" if self.rules.filter_rows else f"no filter; would have filtered {counts}"
        resumed = f", resumed after {self.resumed_batches} finished batches" if self.resumed_batches else ""
        resumed += f", on {self.processes} processes" if self.processes > 1 else ""
        return (
            f"wrote {self.out_dir}: {self.rows:,} of {self.total:,} rows kept ({kept}); teacher "
            f"{self.teacher}@{self.teacher_revision} via {self.backend}, {self.prompt_style} prompt, "
            f"{self.batches} batches{resumed}, {self.seconds:.1f} s"
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


def utterance_complete(generated: str) -> bool:
    """True once more text cannot change `first_utterance(generated)`: its first sentence is followed by a space.

    Generation stops there: a sentence end followed by whitespace on the first line, before any speaker label, is
    where `first_utterance` cuts whatever comes after it.
    """
    text = _SPEAKER_LABEL.split(generated.split("\n", 1)[0], maxsplit=1)[0].lstrip().lstrip(_QUOTES).lstrip()
    match = _FIRST_UTTERANCE.match(text)
    return bool(match) and match.end() < len(text)


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


def prompt_text(utterance: str, prompt_style: str, tokenizer=None) -> str:
    """The text a teacher continues for one caregiver utterance: the chat template's rendering, or the plain prompt."""
    if prompt_style == "completion":
        return COMPLETION_TEMPLATE.format(utterance=utterance)
    return tokenizer.apply_chat_template(build_messages(utterance), tokenize=False, add_generation_prompt=True)


def resolve_prompt_style(prompt_style: str, has_chat_template: bool, teacher: str) -> str:
    """`auto` -> chat when the teacher has a chat template, else completion; `chat` without a template is refused."""
    if prompt_style not in PROMPT_STYLES:
        raise BabyhubError(f"unknown prompt style {prompt_style!r}: use one of {', '.join(PROMPT_STYLES)}.")
    if prompt_style == "auto":
        return "chat" if has_chat_template else "completion"
    if prompt_style == "chat" and not has_chat_template:
        raise BabyhubError(
            f"the teacher {teacher} has no chat template, so it cannot be prompted in the chat style: use the "
            "completion style (the original's plain prompt for base models)."
        )
    return prompt_style


class TransformersTeacher:
    """Any local or Hub causal LM through transformers, on one device, with the prompt prefix computed once.

    Prompts are tokenized as plain `generate` would get them (the chat template's text without extra special
    tokens, or the completion text with the tokenizer's own BOS); the prefix all prompts of the run share is
    cached by `PrefixCachedGenerator` and reused for every batch.
    """

    name = "transformers"

    def __init__(self, teacher: str, *, revision: str | None, device: str, sampling: Sampling, prompt_style: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(teacher, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(teacher, revision=revision, dtype=torch.float32)
        except OSError as err:
            raise BabyhubError(
                f"cannot load the teacher {teacher!r} (revision {revision or 'default'}): {err}. Pass a local model "
                "folder (`babyhub teacher fetch` makes one) or a Hub id reachable through HF_ENDPOINT."
            ) from err
        self.model.to(device).eval()
        self.sampling = sampling
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.prompt_style = resolve_prompt_style(prompt_style, has_template, teacher)
        self.stops = stops_for(self.prompt_style)
        self.revision = revision or _teacher_revision(teacher, self.model)
        self.generator = None

    def encode(self, utterance: str) -> list[int]:
        text = prompt_text(utterance, self.prompt_style, self.tokenizer)
        return self.tokenizer(text, add_special_tokens=self.prompt_style == "completion")["input_ids"]

    def prepare(self, utterances: list[str]) -> None:
        """Fix the cached prefix from every prompt of the run, so every batch (and shard) splits alike."""
        from hub_tools.data.generation import PrefixCachedGenerator, common_prefix_length

        prompts = [self.encode(u) for u in utterances]
        prefix = prompts[0][: common_prefix_length(prompts)]
        self.generator = PrefixCachedGenerator(
            self.model, self.tokenizer, stop_strings=self.stops, stop_when=utterance_complete, prefix_ids=prefix
        )

    def generate(self, utterances: list[str], rows: list[int], seed: int) -> list[str]:
        if self.generator is None:
            self.prepare(utterances)
        prompts = [self.encode(u) for u in utterances]
        new = self.generator.generate(prompts, [row_seed(seed, row) for row in rows], self.sampling)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)


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
    """vLLM (GPU): one request per prompt with its row's own seed, so results do not depend on batching."""

    name = "vllm"

    def __init__(
        self,
        teacher: str,
        *,
        revision: str | None,
        sampling: Sampling,
        prompt_style: str,
        tensor_parallel_size: int = 1,
    ):
        try:
            from vllm import LLM
        except ImportError as err:
            raise BabyhubError(
                "the vllm backend needs vLLM: install it with `pip install 'babyhub[vllm]'` (Linux + GPU), or use "
                "the transformers backend."
            ) from err
        # tensor_parallel_size > 1: vLLM splits the teacher's weights over that many GPUs, with workers of its own.
        self.llm = LLM(model=teacher, revision=revision, tensor_parallel_size=tensor_parallel_size)
        has_template = bool(getattr(self.llm.get_tokenizer(), "chat_template", None))
        self.prompt_style = resolve_prompt_style(prompt_style, has_template, teacher)
        self.sampling = sampling
        self.revision = revision or "default"

    def generate(self, utterances: list[str], rows: list[int], seed: int) -> list[str]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k or -1,
                max_tokens=self.sampling.max_new_tokens,
                stop=list(stops_for(self.prompt_style)),
                seed=row_seed(seed, row),
            )
            for row in rows
        ]
        if self.prompt_style == "completion":
            prompts = [COMPLETION_TEMPLATE.format(utterance=u) for u in utterances]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        else:
            outputs = self.llm.chat([build_messages(u) for u in utterances], params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]


class OpenAITeacher:
    """Any OpenAI-compatible endpoint; the key comes from OPENAI_API_KEY and is never written anywhere."""

    name = "openai"

    def __init__(self, teacher: str, *, revision: str | None, sampling: Sampling, api_base: str | None, prompt_style):
        try:
            from openai import OpenAI
        except ImportError as err:
            raise BabyhubError(
                "the openai backend needs the openai client: install it with `pip install 'babyhub[openai]'`."
            ) from err
        if not os.environ.get("OPENAI_API_KEY"):
            raise BabyhubError(
                "the openai backend reads its key from OPENAI_API_KEY, which is not set: export it (and "
                "OPENAI_BASE_URL, or pass an API base, for another OpenAI-compatible endpoint)."
            )
        self.client = OpenAI(base_url=api_base or os.environ.get("OPENAI_BASE_URL"))
        self.teacher, self.sampling = teacher, sampling
        self.prompt_style = "chat" if prompt_style == "auto" else prompt_style  # an endpoint's template is unknown
        self.revision = revision or "endpoint-default"

    def generate(self, utterances: list[str], rows: list[int], seed: int) -> list[str]:
        common = dict(
            model=self.teacher,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            stop=list(stops_for(self.prompt_style))[:4],  # the API accepts at most four stop sequences
        )
        answers = []
        for utterance, row in zip(utterances, rows, strict=True):
            if self.prompt_style == "completion":
                prompt = COMPLETION_TEMPLATE.format(utterance=utterance)
                response = self.client.completions.create(prompt=prompt, seed=row_seed(seed, row), **common)
                answers.append(response.choices[0].text or "")
            else:
                messages = build_messages(utterance)
                response = self.client.chat.completions.create(messages=messages, seed=row_seed(seed, row), **common)
                answers.append(response.choices[0].message.content or "")
        return answers


def load_teacher(
    backend: str,
    teacher: str,
    *,
    revision=None,
    device="cpu",
    sampling: Sampling = DEFAULT_SAMPLING,
    api_base=None,
    prompt_style: str = "auto",
    tensor_parallel_size: int = 1,
):
    """The generation backend; vllm and openai are optional extras and fail with install instructions.

    `tensor_parallel_size` (vllm only): the number of GPUs one vLLM teacher is split over.
    """
    if prompt_style not in PROMPT_STYLES:
        raise BabyhubError(f"unknown prompt style {prompt_style!r}: use one of {', '.join(PROMPT_STYLES)}.")
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise BabyhubError(f"tensor parallel size {tensor_parallel_size!r}: give a whole number of GPUs, at least 1.")
    if tensor_parallel_size > 1 and backend != "vllm":
        raise BabyhubError(
            f"a tensor parallel size of {tensor_parallel_size} needs the vllm backend, not {backend}: the "
            "transformers backend runs one teacher per process (launch N processes to use N devices)."
        )
    if backend == "transformers":
        return TransformersTeacher(
            teacher, revision=revision, device=device, sampling=sampling, prompt_style=prompt_style
        )
    if backend == "vllm":
        return VllmTeacher(
            teacher,
            revision=revision,
            sampling=sampling,
            prompt_style=prompt_style,
            tensor_parallel_size=tensor_parallel_size,
        )
    if backend == "openai":
        return OpenAITeacher(
            teacher, revision=revision, sampling=sampling, api_base=api_base, prompt_style=prompt_style
        )
    raise BabyhubError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")


# ---------------------------------------------------------------------------------------------- resumable state


@dataclass
class RunState:
    """The `.partial` folder beside the output: the run's settings + the raw answers of every finished batch.

    Each process appends to its own file (`answers.jsonl` on the main process, `answers.rank<r>.jsonl` on rank r),
    one line `{"batch": i, "answers": [...]}` per finished batch, flushed to disk before the next batch starts;
    reading collects every file, so a run resumes with any number of processes. A line torn by a kill (and anything
    after it in its file) does not count: that batch is generated again.
    """

    folder: Path
    settings: dict
    batch_sizes: list[int]  # rows of each batch of the run, by batch index
    rank: int = 0
    done: set[int] = field(default_factory=set)  # batches finished when the run started

    @property
    def answers_file(self) -> Path:
        """This process's file."""
        return self.folder / ("answers.jsonl" if self.rank == 0 else f"answers.rank{self.rank}.jsonl")

    @classmethod
    def open(
        cls,
        folder: Path,
        settings: dict,
        batch_sizes: list[int],
        *,
        restart: bool,
        processes: distributed.Processes = distributed.SINGLE,
    ) -> "RunState":
        """The state of the run on every process: the main process creates or checks it, and says what is done."""
        state = cls(folder, settings, batch_sizes, processes.rank)

        def prepare() -> set[int]:
            if restart and folder.exists():
                shutil.rmtree(folder)
            settings_file = folder / "settings.json"
            if not settings_file.exists():
                folder.mkdir(parents=True, exist_ok=True)
                staged = folder / ".settings.json.tmp"
                staged.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
                staged.replace(settings_file)
                return set()
            saved = json.loads(settings_file.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            if changed:
                raise BabyhubError(
                    f"{folder} holds an interrupted run with other settings ({', '.join(changed)} differ): rerun "
                    "with the same settings to resume it, or pass --restart to discard it."
                )
            return set(state.read_batches())

        # The others wait: nothing appends before the main process has read what is done.
        state.done = distributed.broadcast_from_main(distributed.run_on_main(prepare, processes), processes)
        state._repair()
        return state

    def _parse(self, handle) -> tuple[dict[int, list[str]], int]:
        """The batches of one file up to its first bad line, and the bytes they take."""
        batches, good_bytes = {}, 0
        for line in handle:
            try:
                record = json.loads(line)
                index, answers = record["batch"], record["answers"]
            except (ValueError, KeyError, TypeError):
                break  # a line torn by a kill: that batch is generated again
            if (
                not line.endswith(b"\n")
                or not isinstance(index, int)
                or not 0 <= index < len(self.batch_sizes)
                or not isinstance(answers, list)
                or len(answers) != self.batch_sizes[index]
            ):
                break
            batches.setdefault(index, answers)
            good_bytes += len(line)
        return batches, good_bytes

    def read_batches(self) -> dict[int, list[str]]:
        """Every finished batch in every process's file (the first copy of a batch written twice)."""
        batches: dict[int, list[str]] = {}
        for path in sorted(self.folder.glob("answers*.jsonl")):
            with open(path, "rb") as handle:
                for index, answers in self._parse(handle)[0].items():
                    batches.setdefault(index, answers)
        return batches

    def _repair(self) -> None:
        """Cut this process's own file after its last whole line, so that appending starts on a line of its own."""
        if not self.answers_file.exists():
            self.answers_file.touch()
            return
        with open(self.answers_file, "r+b") as handle:
            handle.truncate(self._parse(handle)[1])

    def append(self, index: int, answers: list[str]) -> None:
        line = json.dumps({"batch": index, "answers": answers}, ensure_ascii=False) + "\n"
        with open(self.answers_file, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())  # a finished batch survives a kill


# ---------------------------------------------------------------------------------------------- the split


def read_train_rows(train: str | Path) -> list[dict]:
    """The rows of a preference dataset's `train` split: a local folder (Hub layout) or a Hub dataset id."""
    from hub_tools.data.preferences import read_preferences

    source = str(train)
    if not Path(source).is_dir() and source.count("/") != 1:
        raise BabyhubError(f"{source}: no such folder; pass a folder built by `babyhub data build` or a Hub id.")
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
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    limit: int | None = None,
    max_words: int = DEFAULT_MAX_WORDS,
    sampling: Sampling = DEFAULT_SAMPLING,
    prompt_style: str = "auto",
    lowercase: bool = True,
    filter_rows: bool = True,
    text_format: str | None = None,
    device: str = "cpu",
    api_base: str | None = None,
    tensor_parallel_size: int = 1,
    restart: bool = False,
    progress: bool = True,
    processes: distributed.Processes | None = None,
) -> SynthesisReport | None:
    """Write a child-dpo-preferences-synthetic folder at out_dir; see the module docstring.

    Args:
        train_dir: the real training split (a folder built by `babyhub data build`, or a Hub dataset id).
        teacher: the teacher model (a folder, e.g. from `babyhub teacher fetch`, or a Hub id; for openai a model).
        out_dir: the dataset folder to write; it appears only when every batch is done.
        backend: transformers (CPU or one GPU, prefix-cached), vllm or openai.
        revision: the teacher's revision.
        batch_size: prompts per batch, and per line of the resumable state.
        seed: the run's seed; row r samples with `row_seed(seed, r)`.
        limit: only the first `limit` training rows.
        max_words: answers with more words are filtered (`overlong`).
        sampling: temperature, top_p, top_k and new tokens.
        prompt_style: auto, chat or completion (see the module docstring).
        lowercase: lower-case the kept answers (the original did; CHILDES utterances start lower-case).
        filter_rows: drop empty, mother-repeating and overlong answers; False keeps every row (aligned 1:1 with
            the training split, as the original).
        text_format: `tags` (`*MOT:`/`*CHI:`), `plain` (no speaker tags, as the original's synthetic split), or
            None for the training split's own convention.
        device: torch device of the transformers backend (`cuda`: each launched process its own GPU).
        api_base: the openai backend's base URL.
        tensor_parallel_size: GPUs one vllm teacher is split over (vllm only).
        restart: discard an interrupted run's state instead of resuming it.
        progress: show a progress bar (on the main process, for its own batches).
        processes: the processes to shard the batches over; default: the launcher's (one without a launcher).

    Returns:
        On the main process, a SynthesisReport: rows asked and kept, filter counts, the teacher's revision and the
        resolved prompt style; None on the other processes of a launch.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if batch_size < 1 or max_words < 1 or (limit is not None and limit < 1):
        raise BabyhubError(
            "--batch-size, --max-words and --limit must be at least 1."
        )  # named as tests/test_data_commands.py expects
    if text_format is not None and text_format not in TEXT_FORMATS:
        raise BabyhubError(f"unknown text format {text_format!r}: use one of {', '.join(TEXT_FORMATS)}.")
    world_size = processes.world_size if processes else distributed.launched_world_size()
    if backend == "vllm" and world_size > 1:
        raise BabyhubError(
            f"the vllm backend runs in one process, not in each of {world_size} launched "
            "processes: start it without torchrun/accelerate launch and give it several GPUs with a tensor "
            "parallel size (vLLM starts its own workers)."
        )
    processes = processes or distributed.current_processes(device)
    out_dir = Path(out_dir)
    # 1. the training rows and the caregiver utterances the teacher answers
    rows = read_train_rows(train_dir)[:limit]
    if not rows:
        raise BabyhubError(f"{train_dir}: the split `train` is empty.")
    utterances = [strip_tag(row["prompt"]) for row in rows]
    tagged = bool(speaker_of(rows[0]["prompt"]))
    if text_format == "tags" and not tagged:
        raise BabyhubError(
            f"{train_dir} has no speaker tags, so its rows cannot be written with them: build the training split "
            "with tags, or write the synthetic split plain."
        )
    text_format = text_format or ("tags" if tagged else "plain")
    # 2. the teacher, on every process (fails early with install instructions for a missing optional backend)
    model = distributed.run_on_each(
        lambda: load_teacher(
            backend,
            teacher,
            revision=revision,
            device=distributed.device_of(device, processes),
            sampling=sampling,
            api_base=api_base,
            prompt_style=prompt_style,
            tensor_parallel_size=tensor_parallel_size,
        ),
        processes,
    )
    # 3. resume the batches an earlier run finished, if its settings are the same
    settings = {
        "train_fingerprint": hashlib.sha256(json.dumps(utterances).encode("utf-8")).hexdigest(),
        "rows": len(rows),
        "teacher": teacher,
        "teacher_revision": model.revision,
        "backend": backend,
        "batch_size": batch_size,
        "seed": seed,
        "seeding": "per row: row_seed(seed, row)",
        "sampling": asdict(sampling),
        "prompt_style": model.prompt_style,
        "system_prompt": SYSTEM_PROMPT,
        "user_template": USER_TEMPLATE,
        "completion_template": COMPLETION_TEMPLATE,
        "stops": list(stops_for(model.prompt_style)),
    }
    starts = range(0, len(rows), batch_size)
    batch_rows = [list(range(i, min(i + batch_size, len(rows)))) for i in starts]
    folder = out_dir.parent / f".{out_dir.name}.partial"
    state = RunState.open(folder, settings, [len(b) for b in batch_rows], restart=restart, processes=processes)
    # 4. this process's share of the remaining batches (dealt out by index), each saved as soon as it is done
    todo = [i for i in range(len(batch_rows)) if i not in state.done]
    mine = todo[processes.rank :: processes.world_size]
    if mine and hasattr(model, "prepare"):
        model.prepare(utterances)  # the prefix every prompt of the run shares, cached once (alike on every process)
    # The bar of one process counts the whole run (resumed batches as done); under a launcher the main process's
    # counts its own share.
    own = sum(len(batch_rows[i]) for i in mine)
    total = own if processes.is_distributed else len(rows)
    label = f"synthesize ({processes})" if processes.is_distributed else "synthesize"
    show = progress and processes.is_main
    with tqdm(total=total, initial=total - own, desc=label, unit="prompt", disable=not show) as bar:

        def run(index: int) -> None:
            batch = batch_rows[index]
            state.append(index, model.generate([utterances[i] for i in batch], batch, seed))
            bar.update(len(batch))

        steps = len(todo[0 :: processes.world_size])  # the longest share: the main process's
        distributed.run_in_lockstep([lambda i=i: run(i) for i in mine], processes, steps)
    # 5.-6. on the main process: every batch in row order, filtered, written with its card

    rules = AnswerRules(max_words, lowercase, filter_rows, text_format)

    def write() -> SynthesisReport:
        return _write_split(state, rows, utterances, train_dir, out_dir, model, settings, rules)

    report = distributed.run_on_main(write, processes)
    if report is not None:
        report.processes = processes.world_size
        report.seconds = time.perf_counter() - start
    return report


def _write_split(
    state: RunState,
    rows: list[dict],
    utterances: list[str],
    train_dir,
    out_dir: Path,
    model,
    settings: dict,
    rules: AnswerRules,
) -> SynthesisReport:
    """Steps 5 and 6 of `synthesize_preferences`, on the main process once every batch is done."""
    from hub_tools.data.preferences import data_file_for, install_folders, write_dataset_folder

    # 5. first utterance of each answer, lower-cased, filtered and counted
    batches = state.read_batches()
    missing = [i for i in range(len(state.batch_sizes)) if i not in batches]
    if missing:
        raise BabyhubError(
            f"{state.folder}: batches {missing[:5]} have no answers although every process finished: rerun the "
            "same command to generate them."
        )
    raw = [answer for i in range(len(state.batch_sizes)) for answer in batches[i]]
    synthetic, filtered = rules.apply(rows, utterances, raw)
    if not synthetic:
        raise BabyhubError(
            f"every one of the {len(rows)} teacher answers was filtered ({filtered}): check the teacher, raise the "
            f"word limit or keep every row. The raw answers are kept in {state.folder}."
        )
    # 6. write the dataset with its card beside the output, rename into place, drop the state
    report = SynthesisReport(
        out_dir,
        len(synthetic),
        len(rows),
        filtered,
        settings["teacher"],
        model.revision,
        settings["backend"],
        len(state.batch_sizes),
        len(state.done),
        0.0,
        prompt_style=model.prompt_style,
        rules=rules,
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
            made_up=_train_is_made_up(train_dir),
            data_file=data_file,
        )
        write_dataset_folder(staging / out_dir.name, synthetic, card, data_file)
        install_folders(staging, out_dir.parent, [out_dir.name])  # an older build goes with the staging folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(state.folder)
    return report


def teacher_label(teacher: str) -> str:
    """How a card names the teacher: a Hub id as is, a local folder by its name only (never someone's paths)."""
    return f"{Path(teacher).name} (local folder)" if Path(teacher).is_dir() else teacher


def render_synthetic_card(report, settings, rows, train_dir, *, made_up=False, data_file="data/train-*"):
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
        repeat_min_run=REPEAT_MIN_RUN,
        repeat_min_share=REPEAT_MIN_SHARE,
        examples=example_lines(rows),
    )
