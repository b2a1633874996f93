"""DPO training of a baby: the machinery behind the `train_dpo.py` recipe.

- `config`: the script's arguments (`BabyScriptArguments`, `BabyDPOConfig`), every field declared with its help;
- `checks`: reading the training and evaluation data and checking what DPO relies on (special tokens,
  prompt tokens a prefix of prompt + answer, what `max_length` drops);
- `trainer`: loading the model and the packed-pairs `DPOTrainer` (each pair's prompt run once, no padding);
- `callbacks`: module-level `TrainerCallback`s (metrics CSV, the schedule of a resumed run, checkpoint pushes);
- `metrics`: the training metrics CSV;
- `card`: what every card of a run states, rendered per revision by `hub_tools.cards.model_card`.

Nothing here imports TRL at package import: `hub_tools.training.metrics` and friends stay cheap for callers that
only read a run's outputs.
"""
