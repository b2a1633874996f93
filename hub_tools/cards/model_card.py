"""Model cards of DPO-trained babies: one per checkpoint branch and one for `main`.

Rendered from `model_cards/dpo_model.md` with `ModelCard.from_template` and a typed `ModelCardData`
(front matter and `model-index` come from huggingface_hub, never from joined strings). A card says
what the revision is: base model and revision, datasets and revisions, the resolved training config,
step/epoch/tokens, the DPO metrics logged at that step, the checkpoint branches, a CPU usage snippet
in the dialogue convention, and, when an evaluation set is configured, the dialogue min-pair accuracy
with its 95 % interval (Wilson's, from the counts) as `model-index` results.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from hub_tools.paths import MODEL_CARDS, require_dir
from hub_tools.repos import is_repo_id, repo_url

TEMPLATE = "dpo_model.md"
# TRL's DPO metric names, in the order a card lists them.
DPO_METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]


@dataclass
class DatasetRef:
    """A dataset on the Hub (or a local path) and the revision used."""

    id: str
    revision: str | None = None


@dataclass
class EvalScore:
    """Dialogue min-pair accuracy of this revision on an evaluation dataset (`hub_tools.evaluation`'s method)."""

    dataset: DatasetRef
    accuracy: float
    pairs: int
    ties: int = 0
    method: str = "sequence_mean"


@dataclass
class TrainingCardInfo:
    """Everything a DPO model card states."""

    repo_id: str
    revision: str  # "main" or "checkpoint-<step>"
    base_model: str
    base_revision: str | None
    datasets: list[DatasetRef]
    config: dict[str, Any]
    step: int
    epoch: float | None
    tokens_seen: int | None
    metrics: dict[str, float]
    branches: list[str]  # every checkpoint branch known when the card is written
    endpoint: str = "https://huggingface.co"
    eval_score: EvalScore | None = None
    plots: list[str] = field(default_factory=list)  # paths of PNGs in the repo (main card)
    max_steps: int | None = None


def framework_versions() -> dict[str, str]:
    """The versions a card states (the libraries a result depends on, and Python)."""
    import datasets
    import huggingface_hub
    import tokenizers
    import torch
    import transformers
    import trl

    return {
        "TRL": trl.__version__,
        "Transformers": transformers.__version__,
        "PyTorch": torch.__version__,
        "Datasets": datasets.__version__,
        "Tokenizers": tokenizers.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "Python": platform.python_version(),
    }


def render_training_card(info: TrainingCardInfo):
    """The model card of one revision of a DPO-trained baby.

    Args:
        info: what the card states (`hub_tools.training.card.RunCard.write` fills it from a run).

    Returns:
        A `huggingface_hub.ModelCard`: typed `ModelCardData` front matter (with `model-index` when the revision was
        scored on an evaluation set), the body from `model_cards/dpo_model.md`.
    """
    from huggingface_hub import ModelCard, ModelCardData

    eval_results = result = None
    if info.eval_score is not None:
        # The same model-index entries as `babyhub eval minpairs` writes (the accuracy and its 95 % interval's
        # bounds), so the Hub compares them.
        from hub_tools.evaluation import MinpairsResult, minpairs_eval_results

        score = info.eval_score
        result = MinpairsResult(score.dataset.id, score.method, score.accuracy, score.pairs, score.ties)
        eval_results = minpairs_eval_results(result, dataset_revision=score.dataset.revision)
    # Only Hub ids (not local paths) go into the card's metadata, where the Hub links them.
    hub_datasets = [d.id for d in info.datasets if is_repo_id(d.id)]
    card_data = ModelCardData(
        model_name=info.repo_id.split("/")[-1],
        base_model=info.base_model if is_repo_id(info.base_model) else None,
        datasets=hub_datasets or None,
        language="en",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["trl", "dpo", "babylm", "childes", "babyhub"],
        eval_results=eval_results,
    )
    url = repo_url(info.endpoint, info.repo_id)
    branch_links = [(b, f"{url}/tree/{b}") for b in info.branches]
    import yaml

    return ModelCard.from_template(
        card_data,
        template_path=str(require_dir(MODEL_CARDS) / TEMPLATE),
        info=info,
        eval_result=result,
        is_main=info.revision == "main",
        repo_url=url,
        branch_links=branch_links,
        metrics=[(k, info.metrics[k]) for k in DPO_METRICS if k in info.metrics],
        config_yaml=yaml.safe_dump(info.config, sort_keys=True).strip(),
        versions=framework_versions(),
    )
