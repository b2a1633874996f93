"""What changed between two file maps: the files added, deleted and modified, and the diffs of text files.

Used by a pull request's details (`diff`, as the Hub answers `get_discussion_details`), by its merge (a three-way
merge of whole files: the Hub merges files, not lines) and by the commit pages.
"""

import difflib
from dataclasses import dataclass

MAX_DIFF_BYTES = 512 * 1024  # a file larger than this (either side) is listed, not diffed
MAX_DIFF_LINES = 5000


@dataclass
class FileChange:
    """One file's change: `kind` is added, deleted or modified; `diff` is a unified diff, None when not text."""

    path: str
    kind: str
    old: dict | None
    new: dict | None
    diff: str | None = None
    shown: bool = True  # False: the contents were not read (a gated repo, to someone without access)

    @property
    def binary(self) -> bool:
        return self.diff is None

    @property
    def stats(self) -> tuple[int, int]:
        """(lines added, lines removed) of a text change."""
        if not self.diff:
            return 0, 0
        lines = self.diff.splitlines()[2:]
        return sum(x.startswith("+") for x in lines), sum(x.startswith("-") for x in lines)


def same(a: dict | None, b: dict | None) -> bool:
    """Whether two file entries (or absences) hold the same content."""
    if a is None or b is None:
        return a is b
    return a["sha256"] == b["sha256"]


def _text(store, repo, entry: dict | None) -> list[str] | None:
    """The lines of a small text file entry (an absent file has none); None for LFS, large or binary files."""
    if entry is None:
        return []
    if entry.get("lfs") or entry["size"] > MAX_DIFF_BYTES:
        return None
    data = store.read_bytes(repo, entry)
    if b"\0" in data[:8000]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def changes(store, repo, old_files, new_files, *, with_diffs: bool = True) -> list[FileChange]:
    """The changes from `old_files` to `new_files` ({path: entry} maps), sorted by path."""
    out = []
    for path in sorted(set(old_files) | set(new_files)):
        old, new = old_files.get(path), new_files.get(path)
        if same(old, new):
            continue
        kind = "added" if old is None else "deleted" if new is None else "modified"
        change = FileChange(path, kind, old, new, shown=with_diffs)
        if with_diffs:
            before, after = _text(store, repo, old), _text(store, repo, new)
            if before is not None and after is not None:
                lines = list(
                    difflib.unified_diff(
                        before,
                        after,
                        fromfile=f"a/{path}" if old else "/dev/null",
                        tofile=f"b/{path}" if new else "/dev/null",
                    )
                )
                if len(lines) > MAX_DIFF_LINES:
                    lines = lines[:MAX_DIFF_LINES] + [f"@@ diff cut at {MAX_DIFF_LINES} lines @@\n"]
                change.diff = "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)
        out.append(change)
    return out


def git_diff(changes_: list[FileChange]) -> str:
    """The changes as one `git diff`-style text (binary files named, not shown)."""
    parts = []
    for change in changes_:
        parts.append(f"diff --git a/{change.path} b/{change.path}\n")
        if change.kind == "added":
            parts.append("new file\n")
        elif change.kind == "deleted":
            parts.append("deleted file\n")
        if change.diff is not None:
            parts.append(change.diff)
        elif change.shown:
            parts.append(f"Binary files differ ({change.path})\n")
        else:
            parts.append(f"Contents not shown ({change.path}): the repo is gated\n")
    return "".join(parts)


def three_way(base: dict, ours: dict, theirs: dict) -> tuple[list[tuple[str, str, dict | None]], list[str]]:
    """Merge `theirs` into `ours` from their common `base`, file by file.

    Returns the store operations that turn `ours` into the merge, and the paths both sides changed differently
    (conflicts: when there are any, nothing should be merged).
    """
    operations, conflicts = [], []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if same(t, b) or same(o, t):
            continue  # they did not touch it, or both made the same change
        if not same(o, b):
            conflicts.append(path)
        elif t is None:
            operations.append(("delete", path, None))
        else:
            operations.append(("add", path, t))
    return operations, conflicts
