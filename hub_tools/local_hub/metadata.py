"""Card metadata as the Hub reads it: its rules (checked at commit time and by validate-yaml) and the tags it gives.

The Hub refuses a README whose metadata breaks its rules: an unknown licence id, tags that are not strings, a
`model-index` of the wrong shape. The local hub refuses the same at commit time, with a 400 that names the field,
so that a repo `babyhub hub sync` mirrors to huggingface.co cannot be refused there later. The rules are the
documented ones (https://huggingface.co/docs/hub/model-cards, /datasets-cards, /repositories-licenses); keys the
rules do not name pass, as they do on the Hub.

The tags a repo shows (`model_info().tags`, `list_models(filter=)`) come from its card as on the Hub: the card's
`tags`, its `library_name` and `pipeline_tag`, `license:ID`, `dataset:ID` for each dataset, the languages, and
`base_model:ID`.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter

CARD_PATH = "README.md"
MAX_CARD_SIZE = 1024 * 1024  # a README larger than this is not read for metadata (nor accepted with any)

# https://huggingface.co/docs/hub/repositories-licenses
LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
    cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0
    gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl
    apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl
    lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3
    llama4 grok2-community gemma unknown other""".split()
)
# The Hub's task ids (huggingface.js `@huggingface/tasks`), what `pipeline_tag` may be.
PIPELINE_TAGS = frozenset(
    """text-classification token-classification table-question-answering question-answering zero-shot-classification
    translation summarization feature-extraction text-generation text2text-generation fill-mask sentence-similarity
    text-to-speech text-to-audio automatic-speech-recognition audio-to-audio audio-classification audio-text-to-text
    voice-activity-detection depth-estimation image-classification object-detection image-segmentation text-to-image
    image-to-text image-to-image image-to-video unconditional-image-generation video-classification
    reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
    multiple-choice text-ranking text-retrieval time-series-forecasting text-to-video image-text-to-text
    visual-question-answering document-question-answering zero-shot-image-classification graph-ml mask-generation
    zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction video-text-to-text keypoint-detection
    visual-document-retrieval any-to-any video-to-video other""".split()
)
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
LICENSE_EXAMPLES = "apache-2.0, mit, cc-by-4.0, cc-by-nc-sa-4.0, llama3, other"


def _strings(meta: dict, key: str, errors: list[str]) -> list[str]:
    """`meta[key]` as a list of strings (a string or a list of them), noting a wrong type in `errors`."""
    value = meta.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    errors.append(f'"{key}" must be a string or a list of strings, got {_show(value)}')
    return []


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_model_index(value, errors: list[str]) -> None:
    """The shape the Hub requires of `model-index` (what `huggingface_hub.EvalResult`s serialise to)."""
    if not isinstance(value, list):
        errors.append(f'"model-index" must be a list of {{name, results}}, got {_show(value)}')
        return
    for i, model in enumerate(value):
        where = f"model-index[{i}]"
        if not isinstance(model, dict):
            errors.append(f'"{where}" must be a mapping with "name" and "results"')
            continue
        if not isinstance(model.get("name"), str) or not model["name"]:
            errors.append(f'"{where}.name" is required (the model\'s name, a string)')
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f'"{where}.results" must be a list of {{task, dataset, metrics}}')
            continue
        for j, result in enumerate(results):
            _check_result(result, f"{where}.results[{j}]", errors)


def _check_result(result, where: str, errors: list[str]) -> None:
    if not isinstance(result, dict):
        errors.append(f'"{where}" must be a mapping with "task", "dataset" and "metrics"')
        return
    task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
    if not isinstance(task, dict) or not isinstance(task.get("type"), str):
        errors.append(f'"{where}.task.type" is required (a task id such as text-generation)')
    if not isinstance(dataset, dict) or not isinstance(dataset.get("type"), str):
        errors.append(f'"{where}.dataset.type" is required (the dataset id)')
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
        errors.append(f'"{where}.dataset.name" is required (a readable dataset name)')
    if not isinstance(metrics, list) or not metrics:
        errors.append(f'"{where}.metrics" must be a non-empty list of {{type, value}}')
        return
    for k, metric in enumerate(metrics):
        if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
            errors.append(f'"{where}.metrics[{k}].type" is required (a metric id such as accuracy)')
        elif "value" not in metric or isinstance(metric["value"], dict | list):
            errors.append(f'"{where}.metrics[{k}].value" is required (a number or a string)')


def check_metadata(meta: dict | None, repo_type: str) -> list[str]:
    """What the Hub would refuse in a card's metadata: one message per broken rule, empty when it passes."""
    if not meta:
        return []
    errors: list[str] = []
    for licence in _strings(meta, "license", errors):
        if licence not in LICENSES:
            errors.append(
                f'"license" must be one of the Hub\'s licence ids ({LICENSE_EXAMPLES}, ...: see '
                f"https://huggingface.co/docs/hub/repositories-licenses), got {licence!r}; for another licence use "
                '"other" with license_name and license_link'
            )
    for key in ("tags", "language", "datasets", "base_model", "metrics"):
        _strings(meta, key, errors)
    for key in ("library_name", "license_name", "license_link", "pretty_name"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string, got {_show(meta[key])}')
    if "pipeline_tag" in meta and meta["pipeline_tag"] is not None:
        tag = meta["pipeline_tag"]
        if repo_type == "model" and (not isinstance(tag, str) or tag not in PIPELINE_TAGS):
            errors.append(
                f'"pipeline_tag" must be a Hub task id such as text-generation or fill-mask, got {_show(tag)}'
            )
    if "model-index" in meta:
        _check_model_index(meta["model-index"], errors)
    if repo_type == "space" and meta.get("sdk") is not None and meta["sdk"] not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {", ".join(SPACE_SDKS)}, got {_show(meta["sdk"])}')
    return errors


def check_readme(text: str, repo_type: str) -> dict | None:
    """The metadata of a README about to be committed; InvalidMetadata (its message names every rule) if refused."""
    _, meta = read_front_matter(text)
    errors = check_metadata(meta, repo_type)
    if errors:
        raise InvalidMetadata("Invalid metadata in README.md: " + "; ".join(errors))
    return meta


def card_tags(meta: dict | None) -> list[str]:
    """The tags the Hub derives from card metadata (in a stable order, without repeats)."""
    if not meta:
        return []
    tags: list[str] = []
    ignore: list[str] = []
    tags += _strings(meta, "tags", ignore)
    for key in ("library_name", "pipeline_tag"):
        if isinstance(meta.get(key), str):
            tags.append(meta[key])
    tags += [f"license:{x}" for x in _strings(meta, "license", ignore)]
    tags += [f"dataset:{x}" for x in _strings(meta, "datasets", ignore)]
    tags += _strings(meta, "language", ignore)
    tags += [f"base_model:{x}" for x in _strings(meta, "base_model", ignore)]
    return list(dict.fromkeys(t for t in tags if t))


@dataclass
class Card:
    """A commit's README: its metadata (None when absent or unreadable), its text, and the tags it gives."""

    meta: dict | None = None
    text: str = ""
    tags: list[str] = field(default_factory=list)


class CardCache:
    """Cards by (repo folder, commit id): a commit never changes, so listings parse each README once."""

    def __init__(self, size: int = 512):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def card(self, store, repo, commit_id: str) -> Card:
        key = (str(repo.dir), commit_id)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        card = read_card(store, repo, commit_id)
        with self._lock:
            self._items[key] = card
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return card


def read_card(store, repo, commit_id: str) -> Card:
    """The README of a commit as a `Card` (an empty one when there is none, or it is too large or invalid)."""
    commit = store.get_commit(repo, commit_id)
    entry = commit["files"].get(CARD_PATH) if commit else None
    if entry is None or entry["size"] > MAX_CARD_SIZE:
        return Card()
    text = store.read_bytes(repo, entry).decode("utf-8", "replace")
    try:
        _, meta = read_front_matter(text)
    except InvalidMetadata:
        return Card(text=text)
    return Card(meta, text, card_tags(meta))
