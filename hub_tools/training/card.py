"""The model cards of a training run: one per checkpoint branch and one for `main`.

What a run's cards share (the repo, the base model, the datasets, the whitelisted training settings, the
evaluation pairs) is fixed when the run starts (`RunCard.from_args`); what differs per revision (step, epoch, the
metrics logged at that step, the branches known by then, the curves on `main`) comes with each `write`. A card is
written in the push thread, after the checkpoint is staged: scoring the evaluation pairs never blocks training.
The card itself is `hub_tools.cards.model_card.render_training_card`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_tools.cards.model_card import DatasetRef, EvalScore, TrainingCardInfo, render_training_card


@dataclass
class RunCard:
    """What every card of one run states, whatever its revision."""

    repo_id: str
    base_model: str
    base_revision: str | None
    dataset: DatasetRef
    config: dict[str, Any]
    eval_dataset: DatasetRef | None = None
    eval_data: Any = None  # hub_tools.evaluation.MinimalPairsData scored at every revision, or None
    max_steps: int | None = None

    @property
    def datasets(self) -> list[DatasetRef]:
        """The datasets the run used: the training set, then the evaluation set."""
        return [self.dataset] + ([self.eval_dataset] if self.eval_dataset else [])

    @classmethod
    def from_args(cls, script_args, training_args, model_args, eval_data=None) -> RunCard:
        """The card of a `train_dpo.py` run, from its parsed arguments.

        Args:
            script_args: the run's `BabyScriptArguments`.
            training_args: its `BabyDPOConfig` (the card states the whitelisted settings only).
            model_args: TRL's `ModelConfig` (the base model and its revision).
            eval_data: the pairs each revision is scored on (`checks.read_eval_pairs`), or None.

        Returns:
            The `RunCard`; the repo is `--hub_model_id`, or the output folder's name without one.
        """
        config = training_args.card_config()
        config["num_processes"] = training_args.world_size
        config["effective_batch_size"] = (  # pairs per optimizer step, over all processes
            training_args.world_size
            * training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps
        )
        config["tokenization"] = script_args.tokenization
        config["dataset_name"] = script_args.dataset_name
        config["model_name_or_path"] = model_args.model_name_or_path
        eval_dataset = None
        if script_args.eval_dataset_name:
            eval_dataset = DatasetRef(script_args.eval_dataset_name, script_args.eval_dataset_revision)
        max_steps = training_args.max_steps
        return cls(
            repo_id=training_args.hub_model_id or Path(training_args.output_dir).name,
            base_model=model_args.model_name_or_path,
            base_revision=model_args.model_revision,
            dataset=DatasetRef(script_args.dataset_name, script_args.dataset_revision),
            config=config,
            eval_dataset=eval_dataset,
            eval_data=eval_data,
            max_steps=max_steps if max_steps and max_steps > 0 else None,
        )

    def score(self, folder: Path) -> EvalScore | None:
        """The dialogue min-pair accuracy of the model in `folder` on the run's evaluation pairs (None without)."""
        if self.eval_data is None or self.eval_dataset is None:
            return None
        from hub_tools.evaluation import evaluate_minpairs
        from hub_tools.scoring import Scorer

        result = evaluate_minpairs(Scorer.from_pretrained(str(folder)), self.eval_data, progress=False)
        return EvalScore(
            dataset=self.eval_dataset, accuracy=result.accuracy, pairs=result.n, ties=result.ties, method=result.method
        )

    def write(
        self,
        folder: str | Path,
        *,
        revision: str,
        step: int,
        epoch: float | None,
        metrics: dict,
        branches: list[str],
        plots: list[str] | None = None,
    ) -> Path:
        """Render the card of `revision` into `folder/README.md`, scoring the evaluation pairs first when set.

        Args:
            folder: the model folder the card describes (a staged checkpoint, or the output folder for `main`).
            revision: `main` or `checkpoint-<step>`.
            step: the training step of the model in `folder`.
            epoch: its epoch (None when unknown).
            metrics: the training log row at that step (`metrics.metrics_at`).
            branches: the checkpoint branches known by then, in step order.
            plots: the curves' paths inside the repo (the main card shows them).

        Returns:
            The path of the card.
        """
        from huggingface_hub import constants

        folder = Path(folder)
        info = TrainingCardInfo(
            repo_id=self.repo_id,
            revision=revision,
            base_model=self.base_model,
            base_revision=self.base_revision,
            datasets=self.datasets,
            config=self.config,
            step=step,
            epoch=epoch,
            tokens_seen=int(metrics["num_tokens"]) if metrics.get("num_tokens") is not None else None,
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
            branches=branches,
            endpoint=constants.ENDPOINT,
            eval_score=self.score(folder),
            plots=plots or [],
            max_steps=self.max_steps,
        )
        readme = folder / "README.md"
        readme.unlink(missing_ok=True)  # never write through a hard link into the Trainer's checkpoint folder
        render_training_card(info).save(readme)
        return readme
