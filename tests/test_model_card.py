"""DPO model cards: typed metadata (model-index from an eval score), per-revision content, no local paths as ids."""

from huggingface_hub import ModelCard

from hub_tools.cards.model_card import DatasetRef, EvalScore, TrainingCardInfo, render_training_card


def _info(**changes):
    info = TrainingCardInfo(
        repo_id="me/baby-dpo",
        revision="checkpoint-4000",
        base_model="bbunzeck/another-llama",
        base_revision="0123abc",
        datasets=[DatasetRef("me/child-dpo-preferences", "rev1"), DatasetRef("/tmp/local/eval-folder")],
        config={"beta": 0.1, "learning_rate": 5e-6, "per_device_train_batch_size": 4},
        step=4000,
        epoch=3.55,
        tokens_seen=1234567,
        metrics={
            "loss": 0.5123,
            "rewards/chosen": 0.25,
            "rewards/rejected": -0.5,
            "rewards/margins": 0.75,
            "rewards/accuracies": 0.8,
            "logits/chosen": -1.0,
        },
        branches=["checkpoint-2000", "checkpoint-4000"],
        endpoint="http://127.0.0.1:9999",
        max_steps=11250,
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def test_checkpoint_card_states_its_step_metrics_and_branches():
    card = ModelCard(str(render_training_card(_info())))  # round trip through the text the Hub stores
    text = card.text
    assert "step 4000** of 11250" in text and "| epoch | 3.55 |" in text and "| tokens seen | 1,234,567 |" in text
    assert "| rewards/margins | 0.7500 |" in text and "| rewards/accuracies | 0.8000 |" in text
    assert "logits/chosen" not in text  # only the DPO metrics a reader compares
    assert "[checkpoint-2000](http://127.0.0.1:9999/me/baby-dpo/tree/checkpoint-2000)" in text
    assert 'repo, revision = "me/baby-dpo", "checkpoint-4000"' in text and '"*MOT: what is that ? *CHI:"' in text
    assert "beta: 0.1" in text and "`bbunzeck/another-llama` @ `0123abc`" in text
    assert "Training curves" not in text and card.data.eval_results is None
    assert card.data.base_model == "bbunzeck/another-llama"
    assert card.data.datasets == ["me/child-dpo-preferences"]  # a local folder is not a Hub id


def test_eval_score_becomes_model_index_and_main_card_shows_plots():
    score = EvalScore(dataset=DatasetRef("me/child-dpo-preferences-eval", "rev2"), accuracy=0.61234, pairs=7548)
    card = ModelCard(str(render_training_card(_info(revision="main", eval_score=score, plots=["plots/loss.png"]))))
    assert "model-index" in str(card).split("---")[1]
    result, low, high = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == (
        "accuracy",
        0.6123,
        "me/child-dpo-preferences-eval",
    )
    assert result.dataset_revision == "rev2" == low.dataset_revision
    # Wilson's interval of 4,622 of 7,548 pairs, beside the accuracy in the model-index and in the text.
    from hub_tools.stats import wilson_interval

    bounds = wilson_interval(4622, 7548)
    assert [(r.metric_type, r.metric_value) for r in (low, high)] == [
        ("accuracy_ci95_low", round(bounds[0], 4)),
        ("accuracy_ci95_high", round(bounds[1], 4)),
    ]
    assert f"95 % interval {bounds[0]:.4f} – {bounds[1]:.4f}" in card.text
    assert "![plots/loss.png](plots/loss.png)" in card.text and "**0.6123**" in card.text
    assert "7548 pairs" in card.text and "The final model of a DPO run" in card.text


def test_card_without_logged_metrics_says_so():
    text = render_training_card(_info(metrics={}, tokens_seen=None, epoch=None)).text
    assert "No training metrics were logged" in text and "| tokens seen | n/a |" in text
