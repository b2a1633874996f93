"""Does `sequence_sum_bow_legacy` decide BLiMP as minicons 0.3.8 did? Scores all pairs with both and compares.

The original work scored lower-cased BLiMP with minicons 0.3.8 (summed log-probabilities, beginning-of-word
correction); later minicons versions changed the correction. minicons 0.3.8 lives in a venv of its own, beside
the installed one:

    python -m venv --system-site-packages /work/venv-minicons038
    /work/venv-minicons038/bin/pip install --no-deps minicons==0.3.8
    python benchmarks/bow_legacy_agreement.py --model path/to/baby --minicons-python /work/venv-minicons038/bin/python
    python benchmarks/bow_legacy_agreement.py --model path/to/baby --minicons-python ... --pairs-per-paradigm 20

The 0.3.8 venv runs this file with `--score-038` (0.3.8 imports `AutoModelForVision2Seq`, which transformers 5
renamed `AutoModelForImageTextToText`: the alias is set before the import, nothing else changes) and writes its
scores to a JSON file; this process then scores the same sentences with babyhub's `sequence_sum_bow` (minicons
0.3.39's correction) and `sequence_sum_bow_legacy`, and prints the largest score difference to 0.3.8 and the
pairs each decides differently from 0.3.8, with the macro-averaged accuracies (as the original reports BLiMP).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BLIMP = REPO.parent / "shared" / "data" / "blimp"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (or Hub id) to score with")
    parser.add_argument("--minicons-python", help="the Python of a venv with minicons==0.3.8")
    parser.add_argument("--pairs-per-paradigm", type=int, default=None, help="first N pairs of each (default: all)")
    parser.add_argument("--score-038", metavar="OUT", help=argparse.SUPPRESS)  # run inside the 0.3.8 venv
    return parser.parse_args(argv)


def read_blimp(pairs_per_paradigm: int | None) -> dict[str, list[str]]:
    """Every paradigm's lines, lower-cased as the original did (grammatical, ungrammatical, ...)."""
    suite = {}
    for file in sorted(BLIMP.glob("*.txt")):
        lines = [line.lower() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        suite[file.stem] = lines[: 2 * pairs_per_paradigm] if pairs_per_paradigm else lines
    return suite


def score_with_minicons_038(model: str, suite: dict[str, list[str]], out: str) -> None:
    """Inside the 0.3.8 venv: summed, beginning-of-word corrected scores of every line, in chunks of 64."""
    import torch
    import transformers

    transformers.AutoModelForVision2Seq = transformers.AutoModelForImageTextToText
    from importlib.metadata import version

    from minicons.scorer import IncrementalLMScorer

    if version("minicons") != "0.3.8":
        raise SystemExit(f"{sys.executable} has minicons {version('minicons')}, not 0.3.8")
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    lm = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = IncrementalLMScorer(lm, tokenizer=tokenizer, device="cpu")
    scores = {}
    for name, lines in suite.items():
        scores[name] = []
        for lo in range(0, len(lines), 64):
            scores[name] += scorer.sequence_score(
                lines[lo : lo + 64], reduction=lambda x: x.sum(0).item(), bow_correction=True
            )
    Path(out).write_text(json.dumps(scores))


def main(argv=None) -> dict:
    args = parse_args(argv)
    suite = read_blimp(args.pairs_per_paradigm)
    if args.score_038:
        score_with_minicons_038(args.model, suite, args.score_038)
        return {}
    if not args.minicons_python:
        raise SystemExit("give --minicons-python: the Python of a venv with minicons==0.3.8 (see the docstring)")
    from hub_tools.scoring import Scorer, default_workers

    # 1. minicons 0.3.8's scores, from its own venv.
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        command = [args.minicons_python, __file__, "--model", args.model, "--score-038", str(out)]
        if args.pairs_per_paradigm:
            command += ["--pairs-per-paradigm", str(args.pairs_per_paradigm)]
        subprocess.run(command, check=True)
        reference = json.loads(out.read_text())
    # 2. babyhub's two corrections on the same sentences, as pairs.
    scorer = Scorer.from_pretrained(args.model, batch_size=256, workers=default_workers())
    good = [line for lines in suite.values() for line in lines[0::2]]
    bad = [line for lines in suite.values() for line in lines[1::2]]
    names = [name for name, lines in suite.items() for _ in lines[0::2]]
    ref_good = [s for scores in reference.values() for s in scores[0::2]]
    ref_bad = [s for scores in reference.values() for s in scores[1::2]]
    ref_right = [g > b for g, b in zip(ref_good, ref_bad, strict=True)]
    n = len(good)
    result = {"model": args.model, "pairs": n, "paradigms": len(suite), "macro_accuracy": {}}
    result["macro_accuracy"]["minicons 0.3.8"] = _macro(names, ref_right)
    for method, bow in (("sequence_sum_bow", True), ("sequence_sum_bow_legacy", "legacy")):
        ours_good, ours_bad = scorer.pair_sequence_scores(good, bad, reduction="sum", bow_correction=bow)
        right = [g > b for g, b in zip(ours_good, ours_bad, strict=True)]
        worst = max(abs(a - b) for a, b in zip(ours_good + ours_bad, ref_good + ref_bad, strict=True))
        differ = sum(a != b for a, b in zip(right, ref_right, strict=True))
        result[method] = {"max_score_difference": worst, "decisions_differing": differ, "share": differ / n}
        result["macro_accuracy"][method] = _macro(names, right)
    print(json.dumps(result, indent=2))
    return result


def _macro(names: list[str], right: list[bool]) -> float:
    per = {}
    for name, ok in zip(names, right, strict=True):
        per.setdefault(name, []).append(ok)
    return sum(sum(v) / len(v) for v in per.values()) / len(per)


if __name__ == "__main__":
    main()
