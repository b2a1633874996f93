"""Token files of a local hub: one token a line, `#` comments allowed, readable by their owner only.

`babyhub hub serve` and the demo create one with a random token when there is none (the one writer); the
server accepts the tokens in it, and clients read the first one (e.g. `babyhub hub sync --from-token-file`).
A token is never printed: messages point at the file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.local_hub.storage import read_token_file

TOKEN_FILE = "tokens"  # under the hub's root


def ensure_token_file(root: Path, token_file: Path | None = None) -> Path:
    """The hub's token file: `token_file` if given (it must exist), else ROOT/tokens, created when missing.

    A created file holds one random token and is made with mode 0600 in the same call (O_EXCL), so it is
    never readable by others, not even for a moment, and two processes never both write one.
    """
    if token_file is not None:
        if not Path(token_file).is_file():
            raise BabyhubError(f"{token_file}: file not found; create it with one token per line")
        return Path(token_file)
    token_file = Path(root) / TOKEN_FILE
    if not token_file.exists():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return token_file
        with os.fdopen(fd, "w") as f:
            f.write(f"hf_local_{secrets.token_hex(16)}\n")
    return token_file


def read_first_token(path: Path) -> str:
    """The first token of a token file (the one a client sends)."""
    path = Path(path)
    if not path.is_file():
        raise BabyhubError(f"{path}: file not found; give a file whose first line is the token")
    tokens = read_token_file(path)
    if not tokens:
        raise BabyhubError(f"{path} is empty: put the token on its first line")
    return tokens[0]
