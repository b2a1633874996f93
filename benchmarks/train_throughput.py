"""DPO training throughput at three model sizes: babyhub's recipe against plain TRL, and one process against two.

    python benchmarks/train_throughput.py                          # tiny, mid and 135m, 4 steps of 4 x 4 each
    python benchmarks/train_throughput.py --sizes tiny --steps 20  # the tiny baby only, longer
    python benchmarks/train_throughput.py --model DIR              # another model folder as the 135m size
    python benchmarks/train_throughput.py --steps 1 --sizes tiny --out /tmp/smoke   # a smoke run

The sizes (each a LlamaForCausalLM):

- **tiny**: the ≈ 1.1 M-parameter baby bootstrapped from the training text (`babyhub baby bootstrap`);
- **mid**: hidden 384, 6 layers, 6 heads, intermediate 1024, random weights, the baby's tokenizer and vocabulary;
- **135m**: SmolLM2-135M-Instruct as `babyhub teacher fetch` converts it (default
  `~/.cache/babyhub/SmolLM2-135M-Instruct`, read only), its own weights and tokenizer; `--model DIR` for another.

Same rows (the first steps x 16 pairs of the real training split, so every run sees the same pairs in the same
order), the original hyperparameters (batch 4, gradient accumulation 4, learning rate 5e-6, beta 0.1,
max_length 128, which no row reaches):

- **TRL fp32**: plain `trl.DPOTrainer`, fp32, no gradient checkpointing, 4 micro-batches of 4 a step, then
  `save_model` (as TRL's `scripts/dpo.py` ends); its reference model is loaded and runs at every step;
- **babyhub**: `train_dpo.py --config recipes/tiny-cpu.yaml` with the hyperparameters above: reference log-probs
  computed once before training, 4 x 4 fused into one micro-batch of 16, each pair packed as prompt + chosen +
  rejected with only answer tokens scored; then the final model, its curves and card saved;
- **1 process / 2 processes**: babyhub with one thread a process (`OMP_NUM_THREADS=1`), one process 4 x 4 against
  two of 4 x 2 each (`torchrun`, gloo): the same 16 pairs a step, so the same losses and weights up to float
  rounding; the figure is what data parallelism costs and gains on this machine.

Loop = the Trainer's `train_runtime`; end to end = wall time from the start (model and data loading) to the saved
model. The roofline is the training FLOPs of the policy, 6 x parameters x tokens run (every position the policy
ran with gradients: the packed rows for babyhub, TRL's padded rows for TRL), at the FLOP/s of a large fp32 matmul
measured in the same run. Each in-process run is split into phases, measured: setup (model, data, babyhub's
reference pass), the loop's policy forward, reference forward, backward, optimizer step and the rest (collation,
loss, logging), and what follows the loop (saving, card, plots).

Writes `benchmarks/results/train_throughput.json` and `.md` (`--out` for another stem). Ratios are side by side in
one run; other processes on the machine skew every number: quote them with the load they were measured under.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data" / "minpairs" / "len_pairs_no_overlap_1.csv"
RESULTS = REPO / "benchmarks" / "results" / "train_throughput"
SMOLLM2 = Path.home() / ".cache" / "babyhub" / "SmolLM2-135M-Instruct"
BATCH, ACCUMULATION, LEARNING_RATE, BETA, MAX_LENGTH = 4, 4, 5e-6, 0.1, 128  # MAX_LENGTH: the recipe's
TARGETS = {"loop": 3.0, "total": 2.5}  # at 135m on 2 cores, against TRL fp32 (issue 13)
SIZES = ("tiny", "mid", "135m")
MID = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6, "num_key_value_heads": 6,
       "intermediate_size": 1024}  # fmt: skip
TRL, BABYHUB, ONE, TWO = "TRL fp32", "babyhub", "babyhub, 1 process x 1 thread", "babyhub, 2 processes x 1 thread"
PHASES = ("setup", "reference pass", "policy forward", "reference forward", "backward", "optimizer step",
          "loop, the rest", "after the loop")  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES), help="model sizes to run")
    parser.add_argument("--model", type=Path, default=SMOLLM2, help=f"the 135m model folder (default {SMOLLM2})")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "babyhub-train-bench")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of 4 x 4 pairs in each run (default 4)")
    parser.add_argument(
        "--process-sizes", nargs="*", choices=SIZES, default=list(SIZES), help="sizes of the 1-vs-2-process runs"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads of the in-process runs (default: torch's; 1 on a loaded machine)"
    )
    parser.add_argument("--render", type=Path, help="only rewrite STEM.md (and the verdicts) from this results JSON")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results stem: writes STEM.json and STEM.md")
    parser.add_argument("--load", default="", help="what else ran on the machine, for the results' note")
    return parser.parse_args(argv)


def prepare_rows(work_dir: Path, rows: int) -> tuple[Path, Path]:
    """The full training split (built once) and a dataset folder of its first `rows` pairs."""
    import datasets

    from hub_tools.data.preferences import build_preference_datasets

    train = work_dir / "data" / "child-dpo-preferences"
    if not train.is_dir():
        build_preference_datasets(DATA, work_dir / "data")
    subset = work_dir / f"train-{rows}"
    if not subset.is_dir():
        datasets.load_dataset(str(train))["train"].select(range(rows)).to_parquet(
            str(subset / "data" / "train-00000-of-00001.parquet")
        )
    return train, subset


def prepare_model(size: str, work_dir: Path, train: Path, model: Path) -> Path:
    """The model folder of `size`: the bootstrapped baby, a random mid-size Llama with its tokenizer, or `model`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from hub_tools.training.baby import bootstrap_baby

    if size == "135m":
        if not (model / "config.json").is_file():
            raise SystemExit(f"{model}: no model folder; make one with `babyhub teacher fetch --out {model}`.")
        return model
    baby = work_dir / "baby"
    if not (baby / "config.json").is_file():
        bootstrap_baby(train, baby, size="tiny", max_steps=300)
    if size == "tiny":
        return baby
    out = work_dir / "random-mid"
    if not (out / "config.json").is_file():
        config = AutoConfig.from_pretrained(baby)
        for key, value in MID.items():
            setattr(config, key, value)
        config.head_dim = config.hidden_size // config.num_attention_heads
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
        AutoTokenizer.from_pretrained(baby).save_pretrained(out)
    return out


def count_parameters(model_dir: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


class PhaseTimer:
    """Times a run's phases (see the module docstring) and counts the positions the policy runs with gradients.

    `watch(model)` hooks a model's forward (with gradients: the policy's; without: a reference pass, before the
    loop or in it) and its backbone's input (the tokens); `trainer_callback()` marks the loop's start and end and
    brackets the optimizer step; `watch_backward(trainer)` times `accelerator.backward`.
    """

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.tokens = 0  # positions the policy ran with gradients
        self.reference_tokens = 0  # positions a reference ran in the loop (TRL: at every step)
        self.loop_start = self.loop_end = self.end = None
        self._entered: list[float] = []

    def watch(self, model) -> None:
        import torch

        def before(module, args, kwargs):
            self._entered.append(time.perf_counter())

        def after(module, args, kwargs, output):
            elapsed = time.perf_counter() - self._entered.pop()
            if self._entered:
                return  # a nested call, counted by the outer one
            if torch.is_grad_enabled():
                self.seconds["policy forward"] += elapsed
            else:
                self.seconds["reference forward" if self.loop_start else "reference pass"] += elapsed

        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None and torch.is_grad_enabled():
                self.tokens += ids.numel()
            elif ids is not None and self.loop_start:
                self.reference_tokens += ids.numel()

        model.register_forward_pre_hook(before, with_kwargs=True)
        model.register_forward_hook(after, with_kwargs=True)
        model.base_model.register_forward_pre_hook(count, with_kwargs=True)  # the backbone: LlamaModel

    def watch_backward(self, trainer) -> None:
        backward = trainer.accelerator.backward

        def timed(loss, **kwargs):
            started = time.perf_counter()
            backward(loss, **kwargs)
            self.seconds["backward"] += time.perf_counter() - started

        trainer.accelerator.backward = timed

    def trainer_callback(self):
        from transformers import TrainerCallback

        timer = self

        class Marks(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.loop_start = time.perf_counter()

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                timer._step_start = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kwargs):
                timer.seconds["optimizer step"] += time.perf_counter() - timer._step_start

            def on_train_end(self, args, state, control, **kwargs):
                timer.loop_end = time.perf_counter()

        return Marks()

    def finish(self) -> dict:
        """Seconds of each phase; setup includes the reference pass (listed apart too)."""
        self.end = time.perf_counter()
        s = self.seconds
        s["setup"] = self.loop_start - self.start
        s["after the loop"] = self.end - self.loop_end
        in_loop = ("policy forward", "reference forward", "backward", "optimizer step")
        s["loop, the rest"] = (self.loop_end - self.loop_start) - sum(s[k] for k in in_loop)
        return {k: round(v, 3) for k, v in s.items()}


def run_plain_trl(model_dir: Path, data: Path, out: Path, steps: int) -> dict:
    """The original script's hyperparameters on plain TRL (the answers joined by the one turn separator)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from hub_tools.training.checks import with_turn_separator

    timer = PhaseTimer()
    precision = {"bf16": False, "gradient_checkpointing": False}
    if hasattr(DPOConfig, "activation_checkpointing"):
        precision["activation_checkpointing"] = False
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
        learning_rate=LEARNING_RATE, beta=BETA, max_length=MAX_LENGTH, max_steps=steps, logging_steps=1,
        save_strategy="no", report_to="none", seed=42, disable_tqdm=True, dataloader_pin_memory=False, **precision,
    )  # fmt: skip
    train = with_turn_separator(datasets.load_dataset(str(data))["train"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    timer.watch(model)
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=train, processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[timer.trainer_callback()],
    )  # fmt: skip
    if trainer.ref_model is not None:
        timer.watch(trainer.ref_model)
    timer.watch_backward(trainer)
    result = trainer.train()
    trainer.save_model(str(out))
    phases = timer.finish()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {
        "loop_s": result.metrics["train_runtime"],
        "total_s": timer.end - timer.start,
        "losses": losses,
        "tokens": timer.tokens,
        "reference_tokens": timer.reference_tokens,
        "phases_s": phases,
    }


def babyhub_argv(model_dir: Path, data: Path, out: Path, steps: int) -> list[str]:
    """`train_dpo.py --config recipes/tiny-cpu.yaml` with the original hyperparameters, no checkpoints."""
    return [
        "--config", str(REPO / "recipes" / "tiny-cpu.yaml"), "--model_name_or_path", str(model_dir),
        "--dataset_name", str(data), "--output_dir", str(out), "--max_steps", str(steps),
        "--learning_rate", str(LEARNING_RATE), "--beta", str(BETA), "--logging_steps", "1",
        "--save_strategy", "no", "--seed", "42", "--disable_tqdm", "true", "--max_length", str(MAX_LENGTH),
    ]  # fmt: skip


def read_run(out: Path) -> dict:
    import pandas as pd

    metrics = pd.read_csv(out / "logs" / "training_metrics.csv")
    return {"loop_s": float(metrics["train_runtime"].dropna().iloc[-1]), "losses": metrics["loss"].dropna().tolist()}


def run_babyhub(model_dir: Path, data: Path, out: Path, steps: int) -> dict:
    """babyhub's recipe in this process (`train_dpo.run`), its trainer timed by phase."""
    import train_dpo
    from hub_tools.training import trainer

    timer, trainer_class = PhaseTimer(), trainer.trainer_class

    def timed_trainer_class(pack: bool):
        base = trainer_class(pack)

        class Timed(base):
            def __init__(self, *, model, callbacks=(), **kwargs):
                timer.watch(model)  # before TRL's __init__, which runs the reference pass
                super().__init__(model=model, callbacks=[*callbacks, timer.trainer_callback()], **kwargs)
                timer.watch_backward(self)

        return Timed

    trainer.trainer_class = timed_trainer_class
    try:
        code = train_dpo.run(babyhub_argv(model_dir, data, out, steps))
    finally:
        trainer.trainer_class = trainer_class
    if code != 0:
        raise SystemExit(f"train_dpo.py exited with {code}")
    phases = timer.finish()
    return {**read_run(out), "total_s": timer.end - timer.start, "tokens": timer.tokens, "phases_s": phases}


def run_babyhub_processes(model_dir: Path, data: Path, out: Path, steps: int, processes: int) -> dict:
    """babyhub on `processes` processes of one thread each, 16 pairs a step in all (torchrun for two)."""
    argv = babyhub_argv(model_dir, data, out, steps)
    argv += ["--gradient_accumulation_steps", str(ACCUMULATION // processes)]  # 4 x (4 / N) on each of N
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    start = time.perf_counter()
    done = subprocess.run(
        [*launcher, str(REPO / "train_dpo.py"), *argv], env=env, cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return {**read_run(out), "total_s": time.perf_counter() - start}


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max((x[k] - y[k]).abs().max().item() for k in x)


def run_size(size: str, args, data: Path, train: Path, matmul: float) -> dict:
    model_dir = prepare_model(size, args.work_dir, train, args.model)
    parameters = count_parameters(model_dir)
    samples = args.steps * BATCH * ACCUMULATION
    result = {"size": size, "model": str(model_dir), "parameters": parameters, "samples": samples, "runs": {}}
    runs = result["runs"]
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        tmp = Path(tmp)
        print(f"[{size}] {TRL}", flush=True)
        runs[TRL] = run_plain_trl(model_dir, data, tmp / "trl", args.steps)
        print(f"[{size}] {BABYHUB}", flush=True)
        runs[BABYHUB] = run_babyhub(model_dir, data, tmp / "babyhub", args.steps)
        if size in args.process_sizes:
            for name, n in ((ONE, 1), (TWO, 2)):
                print(f"[{size}] {name}", flush=True)
                runs[name] = run_babyhub_processes(model_dir, data, tmp / f"p{n}", args.steps, n)
            result["max_weight_diff_1_vs_2"] = max_weight_difference(tmp / "p1", tmp / "p2")
            result["max_loss_diff_1_vs_2"] = max(
                abs(a - b) for a, b in zip(runs[ONE]["losses"], runs[TWO]["losses"], strict=True)
            )
    base = runs[TRL]
    for run in runs.values():
        run["loop_samples_per_s"] = samples / run["loop_s"]
        run["total_samples_per_s"] = samples / run["total_s"]
        run["loop_ratio"] = base["loop_s"] / run["loop_s"]
        run["total_ratio"] = base["total_s"] / run["total_s"]
        run["max_loss_diff_vs_trl"] = max(abs(a - b) for a, b in zip(run["losses"], base["losses"], strict=True))
        if run.get("tokens"):
            roofline_s = 6 * parameters * run["tokens"] / matmul
            run["roofline_samples_per_s"] = samples / roofline_s
            run["roofline_fraction"] = roofline_s / run["loop_s"]
    if ONE in runs:
        result["two_vs_one_loop"] = runs[ONE]["loop_s"] / runs[TWO]["loop_s"]
        result["two_vs_one_total"] = runs[ONE]["total_s"] / runs[TWO]["total_s"]
    return result


def format_markdown(report: dict) -> str:
    """The results as Markdown tables: throughput and roofline, phases, 1 vs 2 processes, the targets."""
    results, steps = report["results"], report["steps"]
    lines = [
        "# DPO training throughput: babyhub against plain TRL fp32, and 1 process against 2",
        "",
        f"`python benchmarks/train_throughput.py` on {report['machine']}, {report['date']}; {steps} optimizer steps "
        f"of {BATCH} x {ACCUMULATION} pairs a run (the first {steps * BATCH * ACCUMULATION} pairs of the real "
        f"training split), learning rate {LEARNING_RATE}, beta {BETA}, fp32. Measured fp32 matmul rate: "
        f"{report['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s. Load: {report['load']}",
        "",
        "Loop = the Trainer's `train_runtime`; end to end = from the model load to the saved model. Roofline = "
        '6 x parameters x tokens the policy ran with gradients, at the matmul rate; "of roof" = roofline time / '
        "loop time. max |Δloss| = the largest per-step loss difference from TRL fp32's.",
        "",
        "| size | parameters | run | loop samples/s | × TRL | end-to-end samples/s | × TRL | policy tokens "
        "| roofline samples/s | of roof | max \\|Δloss\\| |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for name, r in result["runs"].items():
            tokens = r.get("tokens")
            roof = f"{r['roofline_samples_per_s']:.1f} | {r['roofline_fraction']:.1%}" if tokens else "– | –"
            lines.append(
                f"| {result['size']} | {result['parameters'] / 1e6:.1f} M | {name} | {r['loop_samples_per_s']:.2f} "
                f"| {r['loop_ratio']:.2f} | {r['total_samples_per_s']:.2f} | {r['total_ratio']:.2f} "
                f"| {tokens or '–'} | {roof} | {r['max_loss_diff_vs_trl']:.1e} |"
            )
    lines += [
        "",
        "## Where the time goes (seconds, measured in the same runs)",
        "",
        "Setup = model and data loading and tokenization (and babyhub's reference pass, also listed apart); "
        "after the loop = saving (babyhub: also the curves and the card).",
        "",
        "| size | run | " + " | ".join(PHASES) + " | end to end |",
        "|---|---|" + "---:|" * (len(PHASES) + 1),
    ]
    for result in results:
        for name in (TRL, BABYHUB):
            r = result["runs"][name]
            cells = " | ".join(f"{r['phases_s'][p]:.2f}" for p in PHASES)
            lines.append(f"| {result['size']} | {name} | {cells} | {r['total_s']:.2f} |")
    with_processes = [r for r in results if "two_vs_one_loop" in r]
    if with_processes:
        lines += [
            "",
            "## One process against two (babyhub, one thread each; torchrun, gloo)",
            "",
            "One process runs 4 x 4 pairs a step, two run 4 x 2 each: the same 16 pairs a step, so the same "
            "losses and weights up to float rounding (the correctness check), and the speed-up of data parallelism "
            "on this machine (the overhead figure). End to end includes starting the processes.",
            "",
            "| size | 1 process loop s | 2 processes loop s | 2 / 1 loop speed-up | 1 process e2e s | 2 processes "
            "e2e s | 2 / 1 e2e speed-up | max \\|Δloss\\| | max \\|Δweight\\| |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for result in with_processes:
            one, two = result["runs"][ONE], result["runs"][TWO]
            lines.append(
                f"| {result['size']} | {one['loop_s']:.2f} | {two['loop_s']:.2f} | {result['two_vs_one_loop']:.2f} "
                f"| {one['total_s']:.2f} | {two['total_s']:.2f} | {result['two_vs_one_total']:.2f} "
                f"| {result['max_loss_diff_1_vs_2']:.1e} | {result['max_weight_diff_1_vs_2']:.1e} |"
            )
    lines += ["", "## Targets (issue 13: at 135 M on 2 cores, against TRL fp32)", ""]
    lines += [f"- {line}" for line in report["verdicts"]] or ["- 135m not run."]
    return "\n".join(lines) + "\n"


def verdicts(results: list[dict]) -> list[str]:
    """One line per target at 135m: met or missed, and when missed, what babyhub's time goes to."""
    lines = []
    for result in results:
        if result["size"] != "135m":
            continue
        ours, trl = result["runs"][BABYHUB], result["runs"][TRL]
        phases, loop = ours["phases_s"], ours["loop_s"]
        for kind, target in TARGETS.items():
            ratio = ours[f"{kind}_ratio"]
            label = "in the loop" if kind == "loop" else "end to end"
            line = f"{label}: {ratio:.2f}x TRL fp32 (target >= {target}x): {'met' if ratio >= target else 'missed'}"
            if ratio < target and kind == "loop":
                # Loop FLOPs: 6 P a token through the policy (forward and backward), 2 P through a reference.
                flops_ratio = (6 * trl["tokens"] + 2 * trl["reference_tokens"]) / (6 * ours["tokens"])
                shares = ", ".join(
                    f"{p} {phases[p]:.1f} s ({phases[p] / loop:.0%})"
                    for p in ("policy forward", "backward", "optimizer step", "loop, the rest")
                )
                line += (
                    f". babyhub's loop ({loop:.1f} s): {shares}, at {ours['roofline_fraction']:.0%} of the "
                    f"training roofline. TRL's loop runs {trl['tokens']} policy tokens and {trl['reference_tokens']} "
                    f"reference tokens ({trl['phases_s']['reference forward']:.1f} s), babyhub's {ours['tokens']} "
                    f"policy tokens and no reference: {flops_ratio:.2f}x fewer FLOPs, the ratio at equal efficiency; "
                    f"the rest of the {ratio:.2f}x is TRL's lower efficiency ({trl['roofline_fraction']:.0%} of its "
                    "roofline, counted on its policy alone)"
                )
                if ours["roofline_fraction"] >= 0.7:
                    line += (
                        f". The loop is compute-bound: more than {flops_ratio:.2f}x needs fewer FLOPs (fewer "
                        "tokens, or a cheaper backward), not less overhead"
                    )
            elif ratio < target:
                line += (
                    f". babyhub end to end ({ours['total_s']:.1f} s): setup {phases['setup']:.1f} s, of which the "
                    f"reference pass {phases['reference pass']:.1f} s (one forward of every pair before training, "
                    f"where TRL runs its reference in the loop: {trl['phases_s']['reference forward']:.1f} s; the "
                    "work moves out of the loop rather than going away, and is paid once per run, not once per "
                    f"epoch), loop {loop:.1f} s, after the loop {phases['after the loop']:.1f} s (saving, card and "
                    f"curves); TRL: setup {trl['phases_s']['setup']:.1f} s, loop {trl['loop_s']:.1f} s, after "
                    f"{trl['phases_s']['after the loop']:.1f} s. With {result['samples']} pairs and one epoch the "
                    "fixed costs (loading, card, curves) and the reference pass weigh as they would in a one-epoch "
                    "run; over the original's 10 epochs the reference pass is a tenth as heavy"
                )
            lines.append(line)
    return lines


def main(argv=None) -> int:
    import torch
    from scoring_throughput import matmul_flops_per_second

    args = parse_args(argv)
    if args.render:  # the same measurements, the tables and verdicts written again
        report = json.loads(args.render.read_text())
        report["verdicts"] = verdicts(report["results"])
        report.update(scaling_panel(report["results"], report["load"]))
        write_report(report, args.render.with_suffix(""))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    train, data = prepare_rows(args.work_dir, args.steps * BATCH * ACCUMULATION)
    matmul = matmul_flops_per_second()
    results = [run_size(size, args, data, train, matmul) for size in args.sizes]
    report = {
        "benchmark": "train_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}, "
        f"torch threads in the in-process runs: {torch.get_num_threads()}",
        "load": f"{args.load} 1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end.",
        "steps": args.steps,
        "matmul_flops_per_second": matmul,
        "targets": TARGETS,
        "results": results,
        "verdicts": verdicts(results),
    }
    report.update(scaling_panel(results, report["load"]))
    write_report(report, args.out)
    return 0


def scaling_panel(results: list[dict], load: str) -> dict:
    """The fields benchmarks/scaling.py plots: samples/s in the training loop at each size, per tool."""
    tools = {"babyhub": "babyhub", "TRL fp32": "TRL fp32"}
    sizes = []
    for result in results:
        runs = result["runs"]
        throughput = {name: runs[run]["loop_samples_per_s"] for run, name in tools.items() if run in runs}
        if "babyhub" in runs and "roofline_samples_per_s" in runs["babyhub"]:
            throughput["roofline (babyhub's tokens)"] = runs["babyhub"]["roofline_samples_per_s"]
        sizes.append({"size": result["size"], "parameters": result["parameters"], "throughput": throughput})
    return {"unit": "samples/s in the training loop", "conditions": load, "sizes": sizes}


def write_report(report: dict, stem: Path) -> None:
    """STEM.json (every figure) and STEM.md (the tables), and the tables printed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = format_markdown(report)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    sys.exit(main())
