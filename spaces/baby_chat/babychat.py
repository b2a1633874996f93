"""The model side of the baby chat Space: which models, how a dialogue becomes a prompt, how an answer
streams, how two answers are scored. `app.py` only wires these to Gradio.

The text convention is babyhub's (hub_tools/dialogue.py): turns `*TAG: utterance` joined by one space,
`*MOT: what is that ? *CHI: it looks like a gun .`. The chat prompt is the whole conversation followed by
`*CHI:`, and the baby's answer ends where it starts another speaker's turn or a new line.

This file travels inside the Space, whose environment has only gradio/torch/transformers (+ their
dependencies). From babyhub it uses three standalone modules, the text convention, the names of checkpoint
branches and the scorer (the same one `babyhub eval minpairs` uses): a checkout imports them from `hub_tools`,
and in the Space they sit beside this file, placed there by the Space bundle (hub_tools/spaces/bundle.py).
The scorer (torch, transformers) is imported on first use, so reading the configuration (`babyhub space
run/push`) stays fast.
"""

from __future__ import annotations

import inspect
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

try:  # a checkout with babyhub installed
    from hub_tools.branches import Revision
    from hub_tools.dialogue import CHILD_TAG, MOTHER_TAG, TURN_SEPARATOR, speaker_of, strip_tag  # noqa: F401
except ImportError:  # the Space bundle: branches.py, dialogue.py and scoring.py sit beside this file
    from branches import Revision
    from dialogue import CHILD_TAG, MOTHER_TAG, TURN_SEPARATOR, speaker_of, strip_tag  # noqa: F401 (app.py)

if TYPE_CHECKING:
    from hub_tools.scoring import Scorer


def _scoring() -> dict:
    """The scorer (torch, transformers), imported on first use rather than with this module."""
    try:  # a checkout with babyhub installed
        from hub_tools.scoring import Scorer, score_minimal_pairs
    except ImportError:  # the Space bundle: scoring.py sits beside this file
        from scoring import Scorer, score_minimal_pairs
    return {"Scorer": Scorer, "score_minimal_pairs": score_minimal_pairs}


def __getattr__(name: str):
    # `babychat.Scorer` and `babychat.score_minimal_pairs` stay available, imported when first asked for.
    if name in ("Scorer", "score_minimal_pairs"):
        return _scoring()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


HERE = Path(__file__).resolve().parent
MODELS_FILE = HERE / "models.yaml"
MODELS_ENV = "BABYHUB_SPACE_MODELS"
EXAMPLES_ENV = "BABYHUB_SPACE_EXAMPLES"

# An answer ends at the next speaker's tag or at a new line; a trailing `*`, `*MO`, `*MOT` may be the start
# of a tag, so it is held back while streaming until the next token decides.
STOP = re.compile(r"\n|\*[A-Z]{2,4}:")
PARTIAL_TAG = re.compile(r"\*[A-Z]{0,4}$")

DEFAULT_BETA = 0.1  # TRL's DPOConfig default: the implicit reward's scale when a model does not say
MAX_LINE_CHARS = 300  # a mother line (or a candidate answer) longer than this is cut, with a notice
NO_REVISION = "local"  # the one "revision" of a model read from a local folder


class SpaceConfigError(ValueError):
    """The model list or the examples cannot be used; the message names the entry and what to do."""


# ------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class ModelSpec:
    """One model column: a Hub repo id (or a local folder), its default revision, a label, the DPO beta."""

    source: str
    revision: str | None = None
    label: str = ""
    beta: float = DEFAULT_BETA

    @property
    def is_local(self) -> bool:
        return Path(self.source).expanduser().is_dir()


@dataclass(frozen=True)
class SpaceConfig:
    """What the Space shows: the models (the first is the baseline) and where examples come from."""

    models: list[ModelSpec]
    examples_dataset: str | None = None
    examples_split: str = "train"
    examples_count: int = 8


def parse_model_list(text: str) -> list[ModelSpec]:
    """Parse `repo_id_or_path[@revision],...` (the BABYHUB_SPACE_MODELS syntax) into specs with unique labels."""
    specs = []
    for i, entry in enumerate(e.strip() for e in text.split(",")):
        if not entry:
            continue
        if Path(entry).expanduser().is_dir():  # a local folder has no revisions (and may hold an `@`)
            source, at, revision = entry, "", ""
        else:
            source, at, revision = entry.partition("@")
        if not source.strip() or (at and not revision.strip()):
            raise SpaceConfigError(
                f"model entry {i + 1} ({entry!r}) is malformed: write `repo_id_or_path` or `repo_id@revision`"
            )
        specs.append(ModelSpec(source=source.strip(), revision=revision.strip() or None))
    if not specs:
        raise SpaceConfigError(f"the model list {text!r} names no model: give at least the baseline")
    return with_labels(specs)


def with_labels(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Fill missing labels (repo name, plus `@revision` when one is pinned) and make all labels unique."""
    out, seen = [], set()
    for spec in specs:
        label = spec.label or Path(spec.source.rstrip("/")).name + (f"@{spec.revision}" if spec.revision else "")
        unique, n = label, 2
        while unique in seen:
            unique, n = f"{label} ({n})", n + 1
        seen.add(unique)
        out.append(ModelSpec(spec.source, spec.revision, unique, spec.beta))
    return out


def read_models_file(path: str | Path = MODELS_FILE) -> SpaceConfig:
    """Read models.yaml: `models: [{repo_id, revision?, label?, beta?}]`, `examples: {dataset, split?, count?}`."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SpaceConfigError(f"cannot read {path}: {err}; fix the file or set {MODELS_ENV}") from err
    entries = data.get("models")
    if not isinstance(entries, list) or not entries:
        raise SpaceConfigError(f"{path}: `models` must be a non-empty list of {{repo_id, revision, label, beta}}")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("repo_id"):
            raise SpaceConfigError(f"{path}: models[{i}] needs a `repo_id` (a Hub repo id or a local folder)")
        unknown = set(entry) - {"repo_id", "revision", "label", "beta"}
        if unknown:
            raise SpaceConfigError(f"{path}: models[{i}] has unknown keys {sorted(unknown)}")
        beta = entry.get("beta", DEFAULT_BETA)
        if not isinstance(beta, int | float) or beta <= 0:
            raise SpaceConfigError(f"{path}: models[{i}].beta must be a positive number, got {beta!r}")
        revision = entry.get("revision")
        specs.append(
            ModelSpec(str(entry["repo_id"]), str(revision) if revision else None, str(entry.get("label") or ""), beta)
        )
    examples = data.get("examples") or {}
    if not isinstance(examples, dict):
        raise SpaceConfigError(f"{path}: `examples` must be a mapping {{dataset, split, count}}")
    return SpaceConfig(
        models=with_labels(specs),
        examples_dataset=examples.get("dataset"),
        examples_split=str(examples.get("split", "train")),
        examples_count=int(examples.get("count", 8)),
    )


def read_space_config(env: Mapping[str, str] | None = None, path: str | Path = MODELS_FILE) -> SpaceConfig:
    """The Space's configuration: BABYHUB_SPACE_MODELS (and BABYHUB_SPACE_EXAMPLES) if set, else models.yaml."""
    env = os.environ if env is None else env
    models_text = env.get(MODELS_ENV, "").strip()
    file_config = read_models_file(path) if not models_text or Path(path).is_file() else None
    if models_text:
        models = parse_model_list(models_text)
        # Keep the file's example settings (and any other setting) when there is a file.
        config = SpaceConfig(models=models) if file_config is None else replace(file_config, models=models)
    else:
        config = file_config
    examples = env.get(EXAMPLES_ENV, "").strip()
    if examples:
        config = replace(config, examples_dataset=examples)
    return config


# ---------------------------------------------------------------------------------------------- revisions
# babyhub's one `Revision` type (branches.py: name, step, commit); the Space keeps its own small lister, because
# it ships alone, and its own order: main first (what a visitor compares against), then checkpoints by step.
def short_commit(revision: Revision) -> str:
    """The commit as the columns show it (7 characters), or `local` for a local folder."""
    return revision.commit[:7] if revision.commit else "local"


def _revision_order(revision: Revision) -> tuple:
    # main first, then checkpoints by step, then anything else by name.
    if revision.name == "main":
        return (0, 0, "")
    return (1, revision.step, "") if revision.step is not None else (2, 0, revision.name)


def list_revisions(spec: ModelSpec, *, api=None) -> list[Revision]:
    """The repo's branches (main, checkpoint-N, ...) with their commits; a pinned revision is included."""
    if spec.is_local:
        return [Revision(NO_REVISION, None)]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = api or HfApi()
    try:
        refs = api.list_repo_refs(spec.source)
        revisions = sorted((Revision.of_branch(b.name, b.target_commit) for b in refs.branches), key=_revision_order)
        if spec.revision and spec.revision not in {r.name for r in revisions}:
            sha = api.model_info(spec.source, revision=spec.revision).sha
            revisions.append(Revision.of_branch(spec.revision, sha))
    except (HfHubHTTPError, OSError) as err:
        raise SpaceConfigError(
            f"model {spec.label!r}: cannot list the revisions of {spec.source!r} on the Hub "
            f"({type(err).__name__}); check the repo id, the revision and HF_ENDPOINT"
        ) from err
    if not revisions:
        raise SpaceConfigError(f"model {spec.label!r}: {spec.source!r} has no branch to load")
    return revisions


def default_revision(spec: ModelSpec, revisions: list[Revision]) -> str:
    names = [r.name for r in revisions]
    if spec.revision in names:
        return spec.revision
    return "main" if "main" in names else names[0]


# ------------------------------------------------------------------------------------------- model store
@dataclass
class LoadedModel:
    """A model ready to chat and score: loaded once per (source, revision) and shared by every session."""

    source: str
    revision: str
    commit: str | None
    model: object
    tokenizer: object
    scorer: Scorer
    context: int  # tokens the model can see (prompt + answer)


# transformers' from_pretrained is not thread-safe: two loads running at once in threads (measured with
# transformers 5.23) leave global state behind that makes every later load keep some weights on the `meta`
# device. So every load in the process goes through this one lock; answering and scoring run in parallel.
_LOAD_LOCK = threading.Lock()


class ModelStore:
    """Loads each (model, revision) once, on first use, and shares it; concurrent first uses wait for one load."""

    def __init__(self, *, device: str = "cpu"):
        self.device = device
        self._models: dict[tuple[str, str], LoadedModel] = {}

    def get(self, spec: ModelSpec, revision: Revision) -> LoadedModel:
        key = (spec.source, revision.commit or revision.name)
        loaded = self._models.get(key)
        if loaded is None:
            with _LOAD_LOCK:
                if key not in self._models:
                    self._models[key] = self._load(spec, revision)
                loaded = self._models[key]
        return loaded

    def loaded(self) -> int:
        return len(self._models)

    def _load(self, spec: ModelSpec, revision: Revision) -> LoadedModel:
        # Load the exact commit the dropdown shows, so the page never lies about what answers.
        rev = None if spec.is_local else (revision.commit or revision.name)
        # The scorer's own load (tokenizer, float32 model, on the device, eval mode) is the one the chat uses.
        scorer = _scoring()["Scorer"].from_pretrained(spec.source, rev, device=self.device)
        model, tokenizer = scorer.model, scorer.tokenizer
        context = getattr(model.config, "max_position_embeddings", None) or 512
        if 0 < getattr(tokenizer, "model_max_length", 0) < context:
            context = tokenizer.model_max_length
        return LoadedModel(spec.source, revision.name, revision.commit, model, tokenizer, scorer, int(context))


# ------------------------------------------------------------------------------------------------ prompts
def clean_line(text: str | None, tag: str, *, max_chars: int = MAX_LINE_CHARS) -> tuple[str, str]:
    """A typed line as a tagged turn (`*MOT: ...`) and a notice if it was cut; ("", "") for an empty line.

    A line typed with its own speaker tag keeps it; new lines become spaces (a turn is one line).
    """
    text = " ".join((text or "").split())
    if not strip_tag(text):
        return "", ""
    utterance = strip_tag(text) if speaker_of(text) else text
    own_tag = f"*{speaker_of(text)}:" if speaker_of(text) else tag
    notice = ""
    if len(utterance) > max_chars:
        notice = f"The line was {len(utterance)} characters long: it was cut to the first {max_chars}."
        utterance = utterance[:max_chars].rstrip()
    return f"{own_tag} {utterance}", notice


@dataclass(frozen=True)
class Prompt:
    """The prompt's text and token ids, and how much of the conversation had to go to fit the context."""

    text: str
    ids: list[int]
    dropped_turns: int = 0
    cut_tokens: int = 0


def build_prompt(turns: list[str], tokenizer, *, max_tokens: int) -> Prompt:
    """The conversation (tagged turns, oldest first) followed by `*CHI:`, trimmed to `max_tokens` tokens.

    Whole turns go first, oldest first; if the last turn alone is still too long its beginning is cut
    (keeping the BOS the tokenizer adds), so the model always sees the end of what the mother said.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must leave room for a prompt, got {max_tokens}")
    turns = [t.strip() for t in turns if t.strip()]
    dropped = 0
    while True:
        text = TURN_SEPARATOR.join([*turns, CHILD_TAG])
        ids = _encode(tokenizer, text)
        if len(ids) <= max_tokens or len(turns) <= 1:
            break
        turns, dropped = turns[1:], dropped + 1
    cut = max(0, len(ids) - max_tokens)
    if cut:
        bos = tokenizer.bos_token_id
        head = ids[:1] if bos is not None and ids and ids[0] == bos else []
        ids = head + ids[len(ids) - (max_tokens - len(head)) :]
        text = tokenizer.decode(ids, skip_special_tokens=True)
    return Prompt(text, ids, dropped, cut)


def _encode(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    # A tokenizer whose template closes texts with EOS would tell the model the dialogue is over.
    eos = tokenizer.eos_token_id
    if ids and eos is not None and ids[-1] == eos and eos != tokenizer.bos_token_id:
        ids = ids[:-1]
    return ids


# --------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class Sampling:
    """Decoding settings; the same settings and seed give the same answer."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.temperature <= 10:
            raise ValueError(f"temperature must be in (0, 10], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_new_tokens <= 512:
            raise ValueError(f"max_new_tokens must be between 1 and 512, got {self.max_new_tokens}")


def cut_answer(text: str) -> tuple[str, bool]:
    """The answer up to the next speaker tag or new line, and whether such a stop was found."""
    match = STOP.search(text)
    return (text[: match.start()], True) if match else (text, False)


def visible_answer(text: str) -> str:
    """What may be shown while streaming: the answer so far without a trailing piece that may start a tag."""
    answer, stopped = cut_answer(text)
    if not stopped:
        answer = PARTIAL_TAG.sub("", answer)
    return answer.strip()


def _next_token(logits, sampling: Sampling, generator) -> int:
    import torch

    if not sampling.do_sample:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        # Nucleus: keep the most probable tokens whose mass reaches top_p (always at least the best one).
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs >= sampling.top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def stream_answer(model, tokenizer, prompt_ids: list[int], sampling: Sampling) -> Iterator[str]:
    """Yield the child's answer as it grows, token by token, until a stop (tag, new line, EOS, max tokens).

    A plain decoding loop with the KV cache and a private `torch.Generator`: concurrent sessions never share
    random state, so a seed reproduces its answer whatever else the Space is doing.
    """
    import torch

    generator = torch.Generator().manual_seed(int(sampling.seed))
    stop_ids = {t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id) if t is not None}
    generated: list[int] = []
    shown = ""
    # transformers 5.2x renamed the KV cache `past_key_values` -> `cache` (argument and output); the Space's
    # requirements allow both, so use the name this model's forward takes.
    cache = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        for _ in range(sampling.max_new_tokens):
            token = _next_token(out.logits[0, -1], sampling, generator)
            if token in stop_ids:
                break
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            visible = visible_answer(text)
            if visible != shown:
                shown = visible
                yield shown
            if cut_answer(text)[1]:
                return
            out = model(input_ids=torch.tensor([[token]]), use_cache=True, **{cache: out[cache]})
    final = cut_answer(tokenizer.decode(generated, skip_special_tokens=True))[0].strip()
    if final != shown:  # a held-back `*` that never became a tag belongs to the answer
        yield final


def generate_answer(model, tokenizer, prompt_ids: list[int], sampling: Sampling) -> str:
    """The complete answer (the last value `stream_answer` yields)."""
    answer = ""
    for answer in stream_answer(model, tokenizer, prompt_ids, sampling):  # noqa: B007 - keep the last
        pass
    return answer


# ------------------------------------------------------------------------------------------------ scoring
@dataclass
class ModelScores:
    """What one model thinks of two answers to one mother line."""

    label: str
    source: str
    revision: str
    commit: str | None
    logp_a: float
    logp_b: float
    logp_per_token_a: float
    logp_per_token_b: float
    extra: dict = field(default_factory=dict)

    @property
    def prefers(self) -> str:
        # As `babyhub eval minpairs`: an answer is preferred when it scores strictly higher (a tie is not "a").
        return "a" if self.logp_a > self.logp_b else "b"

    def as_dict(self) -> dict:
        return {
            "repo_id": self.source,
            "revision": self.revision,
            "commit": self.commit,
            "logp_a": self.logp_a,
            "logp_b": self.logp_b,
            "logp_per_token_a": self.logp_per_token_a,
            "logp_per_token_b": self.logp_per_token_b,
            "prefers": self.prefers,
            **self.extra,
        }


def score_answers(
    specs: list[ModelSpec], models: list[LoadedModel], mother: str, answer_a: str, answer_b: str
) -> dict[str, dict]:
    """Per model (keyed by its spec's label): log p(answer | mother) summed and per token, which answer it prefers, and
    for every model after the first (the baseline) the implicit DPO reward beta * (log pi - log pi_ref).

    `mother` and the answers are tagged turns (`*MOT: ...`, `*CHI: ...`), scored by the very function of
    `babyhub eval minpairs --method answer_sum` (log p(answer | mother + " "), the mother line computed once).
    """
    score_minimal_pairs = _scoring()["score_minimal_pairs"]
    scores = []
    for spec, loaded in zip(specs, models, strict=True):
        pair = ([mother], [answer_a], [answer_b])
        (sum_a,), (sum_b,) = score_minimal_pairs(loaded.scorer, *pair, method="answer_sum", separator=TURN_SEPARATOR)
        (mean_a,), (mean_b,) = score_minimal_pairs(
            loaded.scorer, *pair, method="answer_mean", separator=TURN_SEPARATOR
        )
        scores.append(
            ModelScores(spec.label, spec.source, loaded.revision, loaded.commit, sum_a, sum_b, mean_a, mean_b)
        )
    baseline = scores[0]
    for spec, s in zip(specs[1:], scores[1:], strict=True):
        beta = spec.beta
        reward_a = beta * (s.logp_a - baseline.logp_a)
        reward_b = beta * (s.logp_b - baseline.logp_b)
        s.extra = {
            "beta": beta,
            "dpo_reward_a": reward_a,
            "dpo_reward_b": reward_b,
            "dpo_reward_margin": reward_a - reward_b,
            "reference": baseline.label,
        }
    return {s.label: s.as_dict() for s in scores}


# ----------------------------------------------------------------------------------------------- examples
def read_examples(config: SpaceConfig) -> list[tuple[str, str, str]]:
    """Up to `examples_count` (mother, chosen, rejected) rows of the eval split, tags removed, spread evenly.

    The dataset is a Hub dataset repo id or a local folder in the Hub layout (data/*.parquet).
    """
    import pandas as pd

    if not config.examples_dataset:
        return []
    source = config.examples_dataset
    if Path(source).is_dir():
        files = sorted(Path(source).glob(f"data/{config.examples_split}-*.parquet"))
    else:
        from huggingface_hub import HfApi, hf_hub_download

        prefix = f"data/{config.examples_split}-"
        names = [n for n in HfApi().list_repo_files(source, repo_type="dataset") if n.startswith(prefix)]
        first = sorted(n for n in names if n.endswith(".parquet"))[:1]  # a few examples need one file
        files = [hf_hub_download(source, n, repo_type="dataset") for n in first]
    if not files:
        raise SpaceConfigError(
            f"examples dataset {source!r} has no data/{config.examples_split}-*.parquet file: "
            f"point {EXAMPLES_ENV} (or models.yaml `examples.dataset`) at the eval split"
        )
    frame = pd.read_parquet(files[0], columns=["prompt", "chosen", "rejected"])
    if frame.empty:
        return []
    step = max(1, len(frame) // max(1, config.examples_count))
    rows = frame.iloc[::step].head(config.examples_count)
    return [(strip_tag(r.prompt), strip_tag(r.chosen), strip_tag(r.rejected)) for r in rows.itertuples()]


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with any Hub token of the environment replaced, for messages that reach the page."""
    env = os.environ if env is None else env
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secret = env.get(key)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return re.sub(r"hf_[A-Za-z0-9]{16,}", "hf_***", text)
