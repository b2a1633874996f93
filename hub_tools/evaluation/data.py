"""What babies are evaluated on: dialogue minimal pairs (a CSV, a dataset folder or a Hub id) and BLiMP.

Both are read and checked whole before any model is loaded, so bad data fails in a second, not after a model
download. Errors name the file, dataset, paradigm, row or pair, never a command-line flag: the face that read
the flag adds it (`errors.from_flag`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hub_tools.errors import BabyhubError

# A BLiMP suite: paradigm name -> (grammatical sentences, ungrammatical sentences), aligned.
BlimpSuite = dict[str, tuple[list[str], list[str]]]


@dataclass
class MinimalPairsData:
    """Minimal pairs to evaluate: a name (for tables and cards) and three aligned columns."""

    name: str
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]

    def head(self, n: int | None) -> MinimalPairsData:
        """The first `n` pairs (all of them when `n` is None), under the same name."""
        return replace(self, prompts=self.prompts[:n], chosen=self.chosen[:n], rejected=self.rejected[:n])


def read_minpairs_data(data: str, *, split: str = "train", revision: str | None = None) -> MinimalPairsData:
    """Minimal pairs from a CSV in the published format, a dataset folder, or a Hub dataset id.

    Args:
        data: a `.csv` file (`,pospair,negpair`), a folder built by `babyhub data build`, or a Hub dataset id.
        split: the dataset split to read (folders and Hub ids).
        revision: the dataset revision (Hub ids).

    Returns:
        The pairs, named after the CSV's stem, the folder's name or the Hub id.
    """
    path = Path(data)
    if path.suffix == ".csv":
        from hub_tools.data.minpairs import read_minimal_pairs

        if not path.is_file():
            raise BabyhubError(f"{data}: file not found; give a minimal-pair CSV, a dataset folder or a Hub id")
        pairs = read_minimal_pairs(path).pairs
        return MinimalPairsData(
            path.stem, [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs]
        )
    import datasets

    try:
        table = datasets.load_dataset(str(data), split=split, revision=revision)
    except (FileNotFoundError, ValueError) as err:
        raise BabyhubError(
            f"{data}: could not load split {split!r} ({err}); give a minimal-pair CSV, a dataset folder "
            "with prompt/chosen/rejected columns, or a Hub dataset id"
        ) from err
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in table.column_names]
    if missing:
        raise BabyhubError(
            f"{data}: split {split!r} has no column {', '.join(missing)} (it has {table.column_names}); "
            "minimal pairs need prompt, chosen and rejected"
        )
    name = path.name if path.exists() else str(data)
    return MinimalPairsData(name, list(table["prompt"]), list(table["chosen"]), list(table["rejected"]))


def read_blimp_suite(suite_dir: str | Path, *, lower_case: bool = False) -> BlimpSuite:
    """BLiMP paradigms from a folder of `<paradigm>.txt` files (grammatical line, then ungrammatical line)."""
    suite = Path(suite_dir)
    files = sorted(suite.glob("*.txt")) if suite.is_dir() else []
    if not files:
        raise BabyhubError(f"{suite}: no <paradigm>.txt files found; give the BLiMP folder")
    paradigms = {}
    for file in files:
        lines = file.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise BabyhubError(
                    f"{file}, line {number}: empty line; every line must be a sentence (lines come in pairs)"
                )
        if len(lines) % 2:
            raise BabyhubError(
                f"{file}: {len(lines)} lines, an odd number; lines come in pairs (grammatical, then ungrammatical)"
            )
        if lower_case:
            lines = [line.lower() for line in lines]
        paradigms[file.stem] = (lines[0::2], lines[1::2])
    return paradigms


def head_of_suite(suite: BlimpSuite, n: int | None) -> BlimpSuite:
    """The first `n` pairs of every paradigm (all of them when `n` is None)."""
    return {name: (good[:n], bad[:n]) for name, (good, bad) in suite.items()}


def first_empty(texts: Sequence[str]) -> int | None:
    """Index of the first text that is not a string or is only whitespace (the scorer refuses those)."""
    return next((i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()), None)
