"""What the local hub's store accepts from a request: file paths inside a repo, and the token file.

The store itself is `gitstore.GitStore` (bare git repositories, LFS content in a content-addressed pool); a root
written by the old JSON store is migrated when it is opened (`migrate.py` reads that format, nothing else does).
Repo ids, repo types and ref names follow `hub_tools.repos` (a name outside the grammar raises
`repos.InvalidName`, which the app answers with a 400); a path is checked here, the same way for every endpoint,
for `git push` and for the pages.
"""

from datetime import UTC, datetime
from pathlib import Path

from hub_tools.local_hub.errors import bad_request

MAX_PATH = 1000


def read_token_file(path: Path) -> list[str]:
    """The tokens of a token file, in order: the first field of each line (a line may go on to name its user, see
    `users.py`); blank lines and '#' comments skipped."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def now_iso() -> str:
    """Now, in the Hub's date format (`2024-05-01T12:00:00.000Z`)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def is_control(char: str) -> bool:
    """C0 controls, DEL and the C1 controls (U+0080-U+009F): never part of a name or a path."""
    code = ord(char)
    return code < 32 or 0x7F <= code <= 0x9F


def check_path(path: str) -> str:
    """A file path inside a repo, else a 400: relative, '/'-separated, no empty/'.'/'..' segment, no backslash,
    control character (C0, DEL, C1) or lone surrogate, no `.git` folder or file at any depth, at most MAX_PATH long."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        shown = path[:80] + "..." if isinstance(path, str) and len(path) > 80 else path
        raise bad_request(f"Invalid path {shown!r}: 1 to {MAX_PATH} characters")
    if path.startswith("/") or "\\" in path or any(is_control(c) for c in path):
        raise bad_request(f"Invalid path {path!r}: must be relative, with '/' separators and no control characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in path):
        raise bad_request(f"Invalid path {path!r}: not valid Unicode (a lone surrogate)")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise bad_request(f"Invalid path {path!r}: no empty, '.' or '..' segments")
    if any(p.lower() == ".git" for p in parts):
        raise bad_request(f"Invalid path {path!r}: '.git' is not allowed as a file or folder name")
    return path
