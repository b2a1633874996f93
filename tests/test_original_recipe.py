"""Reproducing the original run: TRL 0.19.1's token sequences, the recipes of its effective batch of 32, and the
accelerate configs as accelerate's own launcher reads them."""

import pytest
import yaml
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

import train_dpo
from hub_tools.errors import BabyhubError
from hub_tools.paths import RECIPES
from hub_tools.training import checks, trainer
from hub_tools.training.config import BabyDPOConfig, check_saves_full_weights, optimizer_steps_per_epoch

# One pair, and its tokens written out by hand from the tiny baby's byte-level BPE vocabulary ("Ġ" is a space).
PAIR = {"prompt": ["*MOT: what is that ?"], "chosen": ["*CHI: you know what ?"], "rejected": ["*CHI: I get this ."]}
PROMPT = ["*", "MOT", ":", "Ġwhat", "Ġis", "Ġthat", "Ġ?"]
CHOSEN = ["*", "CHI", ":", "Ġyou", "Ġknow", "Ġwhat", "Ġ?", "</s>"]
REJECTED = ["*", "CHI", ":", "ĠI", "Ġget", "Ġthis", "Ġ.", "</s>"]


def _trainer(cls, baby, train, tmp_path):
    args = BabyDPOConfig(output_dir=str(tmp_path), max_length=1024, report_to="none", per_device_train_batch_size=1)
    model = AutoModelForCausalLM.from_pretrained(baby)
    return cls(model=model, args=args, train_dataset=train, processing_class=AutoTokenizer.from_pretrained(baby))


def _masked(batch, mask):
    """Each row's token ids where `mask` is 1."""
    return [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch[mask], strict=True)]


def test_trl_0_19_token_sequences_match_a_hand_built_expectation(tiny_baby, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    vocab = tokenizer.get_vocab()
    assert all(t in vocab for t in PROMPT + CHOSEN + REJECTED)  # every hand-written token is one of the baby's
    prompt, chosen, rejected = ([vocab[t] for t in tokens] for tokens in (PROMPT, CHOSEN, REJECTED))

    tokenized, report = checks.tokenize_like_trl_0_19(Dataset.from_dict(PAIR), tokenizer, max_length=1024)
    assert (tokenized[0]["prompt_ids"], tokenized[0]["chosen_ids"], tokenized[0]["rejected_ids"]) == (
        prompt,
        chosen,
        rejected,
    )
    assert (report.kept, report.dropped_by_max_length) == (1, 0)

    # What the trainer runs: prompt + answer + EOS, no BOS, nothing between prompt and answer
    for cls in (trainer.trainer_class(False), trainer.trainer_class(True)):
        dpo = _trainer(cls, tiny_baby, tokenized, tmp_path / cls.__name__)
        batch = dpo.data_collator([dpo.train_dataset[0]])
        assert _masked(batch, "attention_mask") == [prompt + chosen, prompt + rejected], cls.__name__
        assert _masked(batch, "completion_mask") == [chosen, rejected]

    # babyhub's own sequences differ exactly there: BOS first, a space before the answer ("Ġ*")
    joined = checks.with_turn_separator(Dataset.from_dict(PAIR))
    default = _trainer(trainer.BabyDPOTrainer, tiny_baby, joined, tmp_path)
    row = default.train_dataset[0]
    assert row["prompt_ids"] == [tokenizer.bos_token_id, *prompt]
    assert row["chosen_ids"] == [vocab["Ġ*"], *chosen[1:]]

    # max_length drops a pair whose prompt alone reaches it, and says so
    kept, report = checks.tokenize_like_trl_0_19(Dataset.from_dict(PAIR), tokenizer, max_length=len(PROMPT))
    assert (len(kept), report.dropped_by_max_length) == (0, 1)
    kept, report = checks.tokenize_like_trl_0_19(Dataset.from_dict(PAIR), tokenizer, max_length=len(PROMPT) + 2)
    assert (len(kept), report.truncated_by_max_length) == (1, 1)


def test_a_trl_0_19_run_trains_and_its_card_says_so(tiny_baby, small_train_dir, tmp_path):
    out = tmp_path / "run"
    argv = [
        "--config", str(RECIPES / "tiny-cpu.yaml"), "--model_name_or_path", str(tiny_baby),
        "--dataset_name", str(small_train_dir), "--output_dir", str(out), "--max_steps", "2",
        "--save_strategy", "no", "--disable_tqdm", "true", "--tokenization", "trl-0.19",
    ]  # fmt: skip
    assert train_dpo.run(argv) == 0
    card = (out / "README.md").read_text()
    assert "tokenization: trl-0.19" in card and "effective_batch_size: 16" in card


@pytest.mark.parametrize(("recipe", "processes"), [("original-2gpu.yaml", 2), ("original-1gpu.yaml", 1)])
def test_the_original_recipes_give_its_batch_steps_and_checkpoints(recipe, processes, tmp_path):
    script, config, model = train_dpo.parse_args(["--config", str(RECIPES / recipe), "--output_dir", str(tmp_path)])
    assert script.tokenization == "trl-0.19" and model.dtype == "float32"
    assert not config.gradient_checkpointing and not config.precompute_ref_log_probs and not script.pack_pairs
    assert yaml.safe_load((RECIPES / recipe).read_text())["bf16"] is True  # on a GPU; turned off on this CPU
    batch, accumulation = config.per_device_train_batch_size, config.gradient_accumulation_steps
    assert processes * batch * accumulation == 32
    steps = optimizer_steps_per_epoch(18_000, processes=processes, batch=batch, accumulation=accumulation)
    total = steps * int(config.num_train_epochs)
    assert (steps, total) == (563, 5630)
    checkpoints = [*range(config.save_steps, total, int(config.save_steps)), total]
    assert checkpoints == [2000, 4000, 5630]
    assert [round(step / steps, 2) for step in checkpoints] == [3.55, 7.10, 10.0]
    # babyhub's dpo-real recipe (one process, 4 x 4): 16 pairs a step, so its checkpoint-2000 is another point
    assert optimizer_steps_per_epoch(18_000, processes=1, batch=4, accumulation=4) == 1125


def _launch_env(config_name):
    """The environment accelerate's own launcher gives the processes for a config of recipes/accelerate/."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch

    args = launch_command_parser().parse_args(
        ["--config_file", str(RECIPES / "accelerate" / config_name), "train_dpo.py"]
    )
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return args, launch.prepare_deepspeed_cmd_env(args)[1]
    return args, launch.prepare_multi_gpu_env(args)


def test_accelerate_configs_launch_two_processes_that_push_full_weights():
    for name in ("ddp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml"):
        args, env = _launch_env(name)
        assert args.num_processes == 2 and env["ACCELERATE_MIXED_PRECISION"] == "no", name  # the recipe decides
        assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env, name  # DeepSpeed takes the recipe's
        check_saves_full_weights(env)
    assert _launch_env("deepspeed_zero3.yaml")[1]["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    assert _launch_env("fsdp.yaml")[1]["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"

    # Launches whose checkpoints would hold shards only: refused before training, naming the setting
    zero3 = {**_launch_env("deepspeed_zero3.yaml")[1], "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "false"}
    with pytest.raises(ValueError, match="zero3_save_16bit_model: true"):
        check_saves_full_weights(zero3)
    fsdp = {k: v for k, v in _launch_env("fsdp.yaml")[1].items() if k != "FSDP_STATE_DICT_TYPE"}
    with pytest.raises(ValueError, match="not SHARDED_STATE_DICT.*FULL_STATE_DICT"):
        check_saves_full_weights(fsdp)  # FSDP 2's default


def test_a_sharded_launch_with_push_to_hub_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    argv = ["--dataset_name", "d", "--model_name_or_path", "m", "--output_dir", str(tmp_path)]
    with pytest.raises(BabyhubError, match="--push_to_hub under FSDP needs the full weights"):
        train_dpo.parse_args([*argv, "--push_to_hub", "--hub_model_id", "me/run"])
    train_dpo.parse_args(argv)  # without pushing, a sharded checkpoint is the user's choice
