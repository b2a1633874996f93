"""DPO training throughput: babyhub's training against plain TRL, side by side in one run.

    python benchmarks/train_throughput.py                       # bootstraps a tiny baby, 20 steps of 4 x 4
    python benchmarks/train_throughput.py --baby path/to/baby   # a baby of your own
    python benchmarks/train_throughput.py --steps 4             # a short smoke run
    python benchmarks/train_throughput.py --with-trl-defaults   # also TRL's CPU defaults (bf16 + checkpointing)

Same baby, same real training rows (the first steps x 16 of the DPO training split, so every run sees
the same pairs in the same order), the original hyperparameters (batch 4, gradient accumulation 4,
learning rate 5e-6, beta 0.1):

- **TRL fp32**: plain `trl.DPOTrainer` with fp32 and no gradient checkpointing (the fair baseline);
- **TRL defaults** (optional): plain `trl.DPOTrainer` as configured by default (bf16, gradient checkpointing);
- **babyhub**: `train_dpo.py` as `recipes/tiny-cpu.yaml` runs it: reference log-probs computed once before
  training (the reference is frozen), batch 4 x accumulation 4 fused into one micro-batch of 16 (the
  mean of four equal-size micro-batch means is the mean over the 16: the same loss and gradient), and
  each pair packed as prompt + chosen + rejected with only the answer tokens scored (`--pack_pairs`: the
  same log-probs up to float rounding, a third fewer tokens through the model, no padding).

Both sides use the recipe's max_length (128): no row of the data is that long, so nothing is cut on either.

It prints samples/s of the training loop (the Trainer's `train_runtime`) and end to end (model load,
data preparation, reference pass, training), the ratio to TRL fp32 (target >= 2x), and the loss of each
run at every step with the largest difference. Other processes skew every number: measure on a quiet machine.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "minpairs" / "len_pairs_no_overlap_1.csv"
BATCH, ACCUMULATION, LEARNING_RATE, BETA, MAX_LENGTH = 4, 4, 5e-6, 0.1, 128  # MAX_LENGTH: the recipe's
TARGET = 2.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baby", type=Path, help="baby folder (default: bootstrap a tiny baby under --work-dir)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "babyhub-train-bench")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps of each run (default 20)")
    parser.add_argument("--with-trl-defaults", action="store_true", help="also run TRL's defaults (slow on a CPU)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return parser.parse_args(argv)


def prepare_inputs(args) -> tuple[Path, Path]:
    """The baby and a dataset folder of the first steps x 16 real training rows."""
    from hub_tools.data.preferences import build_preference_datasets
    from hub_tools.training.baby import bootstrap_baby

    report = build_preference_datasets(DATA, args.work_dir / "data")
    baby = args.baby
    if baby is None:
        baby = args.work_dir / "baby"
        if not (baby / "config.json").is_file():
            bootstrap_baby(report.train, baby, size="tiny", max_steps=300)
    import datasets

    rows = datasets.load_dataset(str(report.train))["train"].select(range(args.steps * BATCH * ACCUMULATION))
    subset = args.work_dir / f"train-{len(rows)}"
    rows.to_parquet(str(subset / "data" / "train-00000-of-00001.parquet"))
    return baby, subset


def run_plain_trl(baby: Path, data: Path, out: Path, steps: int, *, defaults: bool) -> dict:
    """The original script's hyperparameters on plain TRL (the answers joined by the one turn separator)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from hub_tools.training.checks import with_turn_separator

    start = time.perf_counter()
    # TRL's defaults (bf16 + gradient checkpointing) run on a CPU only with use_cpu=True.
    precision = {"use_cpu": True} if defaults else {"bf16": False, "gradient_checkpointing": False}
    if not defaults and hasattr(DPOConfig, "activation_checkpointing"):
        precision["activation_checkpointing"] = False
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
        learning_rate=LEARNING_RATE, beta=BETA, max_length=MAX_LENGTH, max_steps=steps, logging_steps=1,
        save_strategy="no", report_to="none", seed=42, disable_tqdm=True, **precision,
    )  # fmt: skip
    train = with_turn_separator(datasets.load_dataset(str(data))["train"])
    model = AutoModelForCausalLM.from_pretrained(baby, dtype=torch.float32)
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=train, processing_class=AutoTokenizer.from_pretrained(baby)
    )
    result = trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"loop_s": result.metrics["train_runtime"], "total_s": time.perf_counter() - start, "losses": losses}


def run_babyhub(baby: Path, data: Path, out: Path, steps: int) -> dict:
    """`train_dpo.py --config recipes/tiny-cpu.yaml` with the original hyperparameters."""
    import pandas as pd

    import train_dpo

    start = time.perf_counter()
    code = train_dpo.run([
        "--config", str(REPO / "recipes" / "tiny-cpu.yaml"), "--model_name_or_path", str(baby),
        "--dataset_name", str(data), "--output_dir", str(out), "--max_steps", str(steps),
        "--learning_rate", str(LEARNING_RATE), "--beta", str(BETA), "--logging_steps", "1",
        "--save_strategy", "no", "--seed", "42", "--disable_tqdm", "true", "--max_length", str(MAX_LENGTH),
    ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"train_dpo.py exited with {code}")
    metrics = pd.read_csv(out / "logs" / "training_metrics.csv")
    return {
        "loop_s": float(metrics["train_runtime"].dropna().iloc[-1]),
        "total_s": time.perf_counter() - start,
        "losses": metrics["loss"].dropna().tolist(),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    baby, data = prepare_inputs(args)
    samples = args.steps * BATCH * ACCUMULATION
    runs = {"TRL fp32": lambda out: run_plain_trl(baby, data, out, args.steps, defaults=False)}
    if args.with_trl_defaults:
        runs["TRL defaults"] = lambda out: run_plain_trl(baby, data, out, args.steps, defaults=True)
    runs["babyhub"] = lambda out: run_babyhub(baby, data, out, args.steps)
    results = {}
    for name, run in runs.items():
        with tempfile.TemporaryDirectory(dir=args.work_dir) as out:
            results[name] = run(Path(out))
    base = results["TRL fp32"]
    for r in results.values():
        r["loop_samples_per_s"] = samples / r["loop_s"]
        r["total_samples_per_s"] = samples / r["total_s"]
        r["loop_ratio"] = base["loop_s"] / r["loop_s"]
        r["total_ratio"] = base["total_s"] / r["total_s"]
        r["max_loss_diff"] = max(abs(a - b) for a, b in zip(r["losses"], base["losses"], strict=True))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"\n{args.steps} steps of batch {BATCH} x accumulation {ACCUMULATION} ({samples} samples), baby {baby}")
    print(
        f"{'run':<14}{'loop samples/s':>16}{'x TRL fp32':>12}{'end-to-end/s':>14}{'x TRL fp32':>12}"
        f"{'final loss':>12}{'max |Δloss|':>13}"
    )
    for name, r in results.items():
        print(
            f"{name:<14}{r['loop_samples_per_s']:>16.1f}{r['loop_ratio']:>12.2f}{r['total_samples_per_s']:>14.1f}"
            f"{r['total_ratio']:>12.2f}{r['losses'][-1]:>12.4f}{r['max_loss_diff']:>13.2e}"
        )
    ours = results["babyhub"]
    verdict = "meets" if ours["loop_ratio"] >= TARGET else "misses"
    print(
        f"\nbabyhub {verdict} the target: {ours['loop_ratio']:.2f}x TRL fp32 in the training loop "
        f"(target >= {TARGET}x), {ours['total_ratio']:.2f}x end to end, max loss difference "
        f"{ours['max_loss_diff']:.2e}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
