"""How a teacher samples, and the seed of each row: no torch here, so the CLI can read the defaults cheaply.

A row's seed depends on the run's seed and the row's index only, so batch size, resumption and the number of
processes a synthesis is sharded over never change a row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """How new tokens are chosen. temperature 0 is greedy; top_k None (or 0) and top_p 1.0 disable those filters.

    The defaults are the original study's vLLM settings (vLLM applies no top-k unless asked, unlike
    `transformers.generate`, whose default is 50).
    """

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 30
    top_k: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def row_seed(seed: int, row: int) -> int:
    """The sampling seed of one row of a run: fixed by (run seed, row index), whatever the batch or process."""
    digest = hashlib.sha256(f"babyhub-row-seed:{seed}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # below 2**63: torch.Generator.manual_seed accepts it
