"""Throughput of babyhub's scorer against minicons and against the FLOP roofline, side by side in one run.

    python benchmarks/scoring_throughput.py                       # bootstraps a tiny baby, all 7,548 eval pairs
    python benchmarks/scoring_throughput.py --model path/to/baby  # a model of your own
    python benchmarks/scoring_throughput.py --pairs 300           # a short smoke run
    python benchmarks/scoring_throughput.py --pairs 2000 --against HEAD~1 --no-minicons
                                                  # this scorer against hub_tools/scoring.py at a git revision

On the same model and the evaluation pairs (rows 18,000 on of the length-matched CSV), it measures pairs/s of

- **babyhub**: what `babyhub eval minpairs` runs (`evaluation.evaluate_minpairs`, method `sequence_mean`);
- **(a) minicons, per pair**: the original loop, `IncrementalLMScorer.sequence_score` one sentence at a time;
- **(b) minicons, chunks of 64**: `sequence_score` given the whole list in chunks of 64 texts;
- **(c) roofline**: the model's forward FLOPs per token times the scored tokens of both texts, at the
  FLOP/s of a large fp32 matmul measured in the same run (what a perfect implementation that runs every
  token through the model would reach; sharing the prompt of a pair can go past it).

It prints the accuracy of each, the decisions that differ from babyhub's (only exact ties may differ), and
the ratios against the targets: >= 2.5x (b) and >= 60 % of the roofline. Load from other processes skews
every number here, so measure on a quiet machine.

`--against REV` also times `hub_tools/scoring.py` as it was at git revision REV (read with `git show`) beside
the current one, for `sequence_mean` and `sequence_sum_bow`, alternating the two `--rounds` times so that load
from other processes hits both alike; it reports the median of the rounds' ratios current / REV, in wall-clock
pairs/s (target: >= 0.97, no regression) and in CPU time, and whether the two decide every pair alike.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "minpairs" / "len_pairs_no_overlap_1.csv"
EVAL_START = 18000
TARGET_VS_CHUNKED = 2.5
TARGET_ROOFLINE = 0.60
TARGET_VS_REVISION = 0.97
AGAINST_METHODS = ("sequence_mean", "sequence_sum_bow")


def parse_args(argv=None):
    from hub_tools.eval_commands import EVAL_BATCH_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder or Hub id (default: bootstrap a tiny baby under --work-dir)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/babyhub-bench"), help="for the bootstrapped baby")
    parser.add_argument("--pairs", type=int, default=None, help="evaluate only the first N eval pairs")
    parser.add_argument(
        "--loop-pairs",
        type=int,
        default=None,
        help="pairs for the slow per-pair loop (a) (default: all; its accuracy is then on those)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=EVAL_BATCH_SIZE, help="babyhub's batch size (default: the CLI's)"
    )
    parser.add_argument("--workers", type=int, default=None, help="babyhub's scoring threads (default: the CLI's)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--against", metavar="REV", help="also time hub_tools/scoring.py at this git revision")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed passes per scorer for --against")
    parser.add_argument("--no-minicons", action="store_true", help="skip minicons (a), (b) and the roofline (c)")
    return parser.parse_args(argv)


def bootstrap_model(work_dir: Path) -> Path:
    """A ≈1 M-parameter baby trained briefly on the real training split (cached in work_dir)."""
    from hub_tools.data.preferences import build_preference_datasets
    from hub_tools.training.baby import bootstrap_baby

    out = work_dir / "baby"
    if not (out / "config.json").is_file():
        report = build_preference_datasets(DATA, work_dir / "data")
        bootstrap_baby(report.train, out, size="tiny", max_steps=300, progress=True)
    return out


def forward_flops_per_token(model, context: float) -> float:
    """2 x (weights used per token) + attention over `context` positions (scores and weighted sum) per layer."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in model.parameters()) - embedding  # tied head counted below
    head = model.get_output_embeddings().weight.numel()
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        weights -= head
    attention = 2 * 2 * config.num_hidden_layers * context * config.hidden_size
    return 2 * (weights + head) + attention


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n matmul on this machine (all threads torch uses).

    The product is written into a buffer allocated once: a fresh 16 MiB output per call is mapped and faulted
    in page by page, which varied the figure by 10 % from run to run (395-431 GFLOP/s); this measures the
    arithmetic alone (430-434).
    """
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def decisions(chosen, rejected):
    return [c > r for c, r in zip(chosen, rejected, strict=True)]


def main(argv=None) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub_tools.data.minpairs import read_minimal_pairs
    from hub_tools.evaluation import MinimalPairsData, evaluate_minpairs
    from hub_tools.scoring import Scorer, default_workers, score_minimal_pairs

    args = parse_args(argv)
    # 1. The model and the evaluation pairs.
    model_path = args.model or str(bootstrap_model(args.work_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    pairs = read_minimal_pairs(DATA).pairs[EVAL_START:]
    pairs = pairs[: args.pairs] if args.pairs else pairs
    data = MinimalPairsData("eval", [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])
    n = len(pairs)

    # 2. babyhub, as `babyhub eval minpairs` runs it (a warm-up pass first, as for every contender).
    scorer = Scorer(model, tokenizer, batch_size=args.batch_size, workers=args.workers or default_workers())
    evaluate_minpairs(
        scorer, MinimalPairsData("warm", data.prompts[:64], data.chosen[:64], data.rejected[:64]), progress=False
    )
    start = time.perf_counter()
    ours = evaluate_minpairs(scorer, data, "sequence_mean", progress=False)
    ours_seconds = time.perf_counter() - start
    ours_chosen, ours_rejected = score_minimal_pairs(scorer, data.prompts, data.chosen, data.rejected)

    result = {
        "model": model_path,
        "parameters": sum(p.numel() for p in model.parameters()),
        "pairs": n,
        "threads": torch.get_num_threads(),
        "accuracy": {"babyhub": ours.accuracy},
        "pairs_per_second": {"babyhub": n / ours_seconds},
    }
    if not args.no_minicons:
        result.update(against_minicons(args, model, tokenizer, pairs, ours_seconds, ours, ours_chosen, ours_rejected))
    if args.against:
        result["against_revision"] = against_revision(args, model, tokenizer, data)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return result


def against_minicons(args, model, tokenizer, pairs, ours_seconds, ours, ours_chosen, ours_rejected) -> dict:
    """(a) minicons per sentence, (b) minicons in chunks of 64 and (c) the roofline, with babyhub's ratios."""
    from minicons.scorer import IncrementalLMScorer

    from hub_tools.dialogue import join_turns

    n = len(pairs)
    chosen_texts = [join_turns(p.prompt, p.chosen) for p in pairs]
    rejected_texts = [join_turns(p.prompt, p.rejected) for p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = IncrementalLMScorer(model, tokenizer=tokenizer, device="cpu")

    # 1. (b) minicons with the whole list in chunks of 64 texts.
    texts = chosen_texts + rejected_texts
    reference.sequence_score(texts[:64])
    start = time.perf_counter()
    chunked = []
    for lo in range(0, len(texts), 64):
        chunked += reference.sequence_score(texts[lo : lo + 64])
    chunked_seconds = time.perf_counter() - start
    chunked_chosen, chunked_rejected = chunked[:n], chunked[n:]

    # 2. (a) minicons one sentence at a time, the original loop.
    loop_n = min(args.loop_pairs or n, n)
    start = time.perf_counter()
    loop_chosen, loop_rejected = [], []
    for i in range(loop_n):
        loop_chosen += reference.sequence_score([chosen_texts[i]])
        loop_rejected += reference.sequence_score([rejected_texts[i]])
    loop_seconds = time.perf_counter() - start

    # 3. (c) the roofline, measured now on this machine.
    # Every token but the first of each text is scored, each from one forward position.
    lengths = [len(ids) - 1 for ids in tokenizer(texts)["input_ids"]]
    tokens = sum(lengths)
    context = sum(length * (length + 1) / 2 for length in lengths) / tokens  # mean positions attended per token
    flops_per_token = forward_flops_per_token(model, context)
    matmul = matmul_flops_per_second()
    roofline_pairs = matmul / (flops_per_token * tokens / n)

    # 4. Accuracies and decisions compared with babyhub's.
    ours_decisions = decisions(ours_chosen, ours_rejected)
    margins = [c - r for c, r in zip(ours_chosen, ours_rejected, strict=True)]
    differing = [i for i, d in enumerate(decisions(chunked_chosen, chunked_rejected)) if d != ours_decisions[i]]
    differing += [i for i, d in enumerate(decisions(loop_chosen, loop_rejected)) if d != ours_decisions[i]]
    not_ties = sorted({i for i in differing if abs(margins[i]) > 1e-4})
    rate = {
        "babyhub": n / ours_seconds,
        "minicons_loop": loop_n / loop_seconds,
        "minicons_chunks_64": n / chunked_seconds,
        "roofline": roofline_pairs,
    }
    result = {
        "loop_pairs": loop_n,
        "tokens_per_pair": tokens / n,
        "flops_per_token": flops_per_token,
        "matmul_gflops": matmul / 1e9,
        "pairs_per_second": rate,
        "accuracy": {
            "babyhub": ours.accuracy,
            "minicons_loop": sum(decisions(loop_chosen, loop_rejected)) / loop_n,
            "babyhub_on_loop_pairs": sum(ours_decisions[:loop_n]) / loop_n,
            "minicons_chunks_64": sum(decisions(chunked_chosen, chunked_rejected)) / n,
        },
        "differing_decisions": len(set(differing)),
        "differing_decisions_not_ties": len(not_ties),
        "speedup_vs_loop": rate["babyhub"] / rate["minicons_loop"],
        "speedup_vs_chunks_64": rate["babyhub"] / rate["minicons_chunks_64"],
        "fraction_of_roofline": rate["babyhub"] / roofline_pairs,
    }
    result["targets_met"] = {
        f"speedup_vs_chunks_64 >= {TARGET_VS_CHUNKED}": result["speedup_vs_chunks_64"] >= TARGET_VS_CHUNKED,
        f"fraction_of_roofline >= {TARGET_ROOFLINE}": result["fraction_of_roofline"] >= TARGET_ROOFLINE,
        "identical decisions except exact ties": not not_ties,
    }
    return result


def load_scoring_at(revision: str):
    """hub_tools/scoring.py as it was at a git revision of this repository, imported as a module of its own."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:hub_tools/scoring.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(
            f"--against {revision}: git cannot show hub_tools/scoring.py there ({err.stderr.strip()})"
        ) from None
    with tempfile.TemporaryDirectory(prefix="scoring-at-") as folder:
        path = Path(folder) / "scoring_at_revision.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("scoring_at_revision", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)  # scoring.py is standalone (torch and transformers only)
    return module


def against_revision(args, model, tokenizer, data) -> dict:
    """This scorer and the one at `args.against` on the same pairs, in alternating passes.

    Each round times one pass of each (their order alternates from round to round), so load from other processes
    falls on both alike; the ratio of a round is current / revision, in pairs per second of wall-clock time and
    in CPU seconds of the process (less sensitive to other processes than the wall clock), and the median round
    is reported.
    """
    import statistics

    import hub_tools.scoring as current
    from hub_tools.dialogue import TURN_SEPARATOR
    from hub_tools.scoring import default_workers

    modules = {"current": current, args.against: load_scoring_at(args.against)}
    workers = args.workers or default_workers()
    scorers = {
        name: m.Scorer(model, tokenizer, batch_size=args.batch_size, workers=workers) for name, m in modules.items()
    }
    n = len(data.prompts)
    out = {}
    for method in AGAINST_METHODS:
        rates = {name: [] for name in modules}
        cpu = {name: [] for name in modules}
        decided = {}
        for name, module in modules.items():  # warm-up
            module.score_minimal_pairs(
                scorers[name], data.prompts[:64], data.chosen[:64], data.rejected[:64], method=method
            )
        for round_ in range(args.rounds):
            order = list(modules.items()) if round_ % 2 == 0 else list(reversed(modules.items()))
            for name, module in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                chosen, rejected = module.score_minimal_pairs(
                    scorers[name], data.prompts, data.chosen, data.rejected, method=method, separator=TURN_SEPARATOR
                )
                rates[name].append(n / (time.perf_counter() - start))
                cpu[name].append(time.process_time() - start_cpu)
                decided[name] = decisions(chosen, rejected)
        wall = [a / b for a, b in zip(rates["current"], rates[args.against], strict=True)]
        cpu_ratio = [b / a for a, b in zip(cpu["current"], cpu[args.against], strict=True)]
        out[method] = {
            "pairs_per_second": {name: statistics.median(r) for name, r in rates.items()},
            "ratio": statistics.median(wall),
            "cpu_ratio": statistics.median(cpu_ratio),
            "rounds": args.rounds,
            "identical_decisions": decided["current"] == decided[args.against],
        }
    return out


def report(r: dict) -> str:
    rate, accuracy = r["pairs_per_second"], r["accuracy"]
    if "minicons_loop" not in rate:
        lines = [
            f"model {r['model']} ({r['parameters'] / 1e6:.2f} M parameters), {r['pairs']} pairs, {r['threads']} "
            f"threads; babyhub eval minpairs: {rate['babyhub']:.0f} pairs/s, accuracy {accuracy['babyhub']:.4f}"
        ]
        return "\n".join(lines + _report_against(r))
    lines = [
        f"model {r['model']} ({r['parameters'] / 1e6:.2f} M parameters), {r['pairs']} pairs "
        f"({r['tokens_per_pair']:.1f} scored tokens per pair), {r['threads']} threads",
        f"{'':<30}{'pairs/s':>10}{'accuracy':>10}",
        f"{'babyhub eval minpairs':<30}{rate['babyhub']:>10.0f}{accuracy['babyhub']:>10.4f}",
        f"{'(a) minicons, per sentence':<30}{rate['minicons_loop']:>10.0f}{accuracy['minicons_loop']:>10.4f}"
        + (
            f"  (on {r['loop_pairs']} pairs; babyhub there: {accuracy['babyhub_on_loop_pairs']:.4f})"
            if r["loop_pairs"] != r["pairs"]
            else ""
        ),
        f"{'(b) minicons, chunks of 64':<30}{rate['minicons_chunks_64']:>10.0f}"
        f"{accuracy['minicons_chunks_64']:>10.4f}",
        f"{'(c) roofline':<30}{rate['roofline']:>10.0f}"
        f"    ({r['flops_per_token'] / 1e6:.2f} MFLOP/token at {r['matmul_gflops']:.0f} GFLOP/s)",
        f"speed-up vs (a): {r['speedup_vs_loop']:.1f}x   vs (b): {r['speedup_vs_chunks_64']:.2f}x   "
        f"of the roofline: {r['fraction_of_roofline']:.0%}",
        f"decisions differing from babyhub's: {r['differing_decisions']} "
        f"(not exact ties: {r['differing_decisions_not_ties']})",
    ]
    lines += [f"target {name}: {'met' if ok else 'NOT met'}" for name, ok in r["targets_met"].items()]
    return "\n".join(lines + _report_against(r))


def _report_against(r: dict) -> list[str]:
    if "against_revision" not in r:
        return []
    lines = []
    for method, m in r["against_revision"].items():
        (now, now_rate), (rev, rev_rate) = m["pairs_per_second"].items()
        ok = m["ratio"] >= TARGET_VS_REVISION
        lines.append(
            f"{method}: {now} {now_rate:.0f} pairs/s, {rev} {rev_rate:.0f} pairs/s (medians of {m['rounds']} "
            f"alternating passes); median ratio {m['ratio']:.3f}x wall clock, {m['cpu_ratio']:.3f}x CPU time "
            f"({'no regression' if ok else 'REGRESSION'}, target >= {TARGET_VS_REVISION}); "
            f"decisions {'identical' if m['identical_decisions'] else 'DIFFER'}"
        )
    return lines


if __name__ == "__main__":
    main()
