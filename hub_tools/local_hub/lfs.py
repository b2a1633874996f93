"""Git LFS as the Hub does it: which files go to LFS, their pointer files, and `.gitattributes` patterns.

Pure functions, no I/O. The rule is the local hub's one rule (the same list and threshold as the server's
preupload answer), so that a file the client was told to upload through LFS, a file that a `git push` brings and a
file migrated from an old root all land the same way:

- a file whose name ends in one of `LFS_EXTENSIONS`, or is larger than `LFS_THRESHOLD` (10 MiB, the Hub's limit for
  plain git files), or that a `.gitattributes` line marks `filter=lfs`, is stored as an LFS **pointer file** in git
  (`version ... / oid sha256:... / size ...`), its content in the content-addressed LFS store;
- anything else is a plain git blob.

The pointer format is git-lfs's spec v1; `parse_pointer` accepts exactly what `git lfs` writes (and the few
variants its spec allows: extra `ext-*` keys are refused, as git-lfs itself refuses them when smudging without
the extension).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

LFS_EXTENSIONS = (
    ".parquet",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".arrow",
    ".h5",
    ".onnx",
    ".msgpack",
    ".npy",
    ".npz",
    ".pkl",
    ".zip",
    ".gz",
    ".tar",
    ".model",
)
LFS_THRESHOLD = 10 * 1024 * 1024
POINTER_MAX_SIZE = 1024  # git-lfs never reads more than this when looking for a pointer
SPEC_URL = "https://git-lfs.github.com/spec/v1"
# A new repo's first commit: every extension of the rule, plus TensorBoard event files, as the Hub's default does.
DEFAULT_GITATTRIBUTES = (
    "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_EXTENSIONS)
    + "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
).encode()

_POINTER_RE = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,18})\n\Z"
)


@dataclass(frozen=True)
class Pointer:
    """An LFS pointer: the sha256 and size of the content it stands for."""

    oid: str
    size: int

    def encode(self) -> bytes:
        """The pointer file's bytes, exactly as `git lfs` writes them (so its git blob id matches the Hub's)."""
        return f"version {SPEC_URL}\noid sha256:{self.oid}\nsize {self.size}\n".encode()

    @property
    def pointer_size(self) -> int:
        return len(self.encode())


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer in `data`, or None when `data` is not an LFS pointer file (then it is the file's content)."""
    if len(data) > POINTER_MAX_SIZE or not data.startswith(b"version "):
        return None
    match = _POINTER_RE.match(data)
    return Pointer(match["oid"].decode(), int(match["size"])) if match else None


@dataclass(frozen=True)
class LfsRule:
    """Which paths go to LFS: the extension list, the size threshold and the `filter=lfs` patterns of a tree.

    Build one per commit with `LfsRule.from_gitattributes(content of .gitattributes)`.
    """

    patterns: tuple[str, ...] = ()
    extensions: tuple[str, ...] = LFS_EXTENSIONS
    threshold: int = LFS_THRESHOLD

    @classmethod
    def from_gitattributes(cls, text: bytes | str | None) -> LfsRule:
        return cls(patterns=lfs_patterns(text))

    def matches_path(self, path: str) -> bool:
        """True when the name alone sends the file to LFS (extension list or a `.gitattributes` pattern)."""
        return path.lower().endswith(self.extensions) or self.tracked(path)

    def tracked(self, path: str) -> bool:
        """True when a `.gitattributes` pattern marks `path` `filter=lfs` (what git-lfs smudges on checkout)."""
        by_name, by_path = _combined(self.patterns)
        return bool((by_name and by_name.fullmatch(path.rsplit("/", 1)[-1])) or (by_path and by_path.fullmatch(path)))

    def wants_lfs(self, path: str, size: int) -> bool:
        return size > self.threshold or self.matches_path(path)


def lfs_patterns(text: bytes | str | None) -> tuple[str, ...]:
    """The patterns that a `.gitattributes` marks `filter=lfs`, in order (a later `-filter`/`!filter` unmarks)."""
    if not text:
        return ()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    marked: dict[str, bool] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, *attrs = line.split()
        if pattern.startswith("[attr]"):  # a macro definition, not a path pattern
            continue
        for attr in attrs:
            if attr == "filter=lfs":
                marked[pattern] = True
            elif attr in ("-filter", "!filter") or (attr.startswith("filter=") and attr != "filter=lfs"):
                marked[pattern] = False
    return tuple(p for p, on in marked.items() if on)


@lru_cache(maxsize=256)
def _combined(patterns: tuple[str, ...]) -> tuple[re.Pattern | None, re.Pattern | None]:
    """One regex for the patterns matched against the file name, one for those matched against the whole path.

    git's attribute matching, as far as `.gitattributes` lines go in practice: a pattern without '/' matches the
    file's name in any folder; with a '/', the whole path from the root (a leading '/' anchors it); `**/` matches
    any number of folders; `\\x` is a literal x; `[[:space:]]` a blank. A commit of 10,000 files checks each
    path against every pattern, hence one alternation rather than a loop.
    """
    names = [_glob_regex(p).pattern for p in patterns if "/" not in p]
    paths = [_glob_regex(p.lstrip("/")).pattern for p in patterns if "/" in p]

    def alternation(parts: list[str]) -> re.Pattern | None:
        return re.compile("|".join(f"(?:{part})" for part in parts), re.S) if parts else None

    return alternation(names), alternation(paths)


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern.startswith("[[:space:]]", i):
            out.append(r"\s")
            i += len("[[:space:]]")
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.S)


def gitattributes_line(path: str) -> bytes:
    """The `.gitattributes` line that tracks exactly `path` with LFS (glob characters escaped, blanks as git wants)."""
    escaped = re.sub(r"([\\*?\[\]])", r"\\\1", path).replace(" ", "[[:space:]]")
    return f"/{escaped} filter=lfs diff=lfs merge=lfs -text\n".encode()
