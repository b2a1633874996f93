"""The Hub's vocabulary, shared by babyhub's Hub client and its local hub server.

Repo ids, revisions, repo types, URL prefixes and git blob ids mean the same thing to the code that pushes
(`hub_tools.hub.publish`, `hub_tools.hub.sync`), the code that reads (evaluation, training, the Spaces) and the local
hub that stores them. They live here, standard library only, so that the client and the server both import
this module and never each other, and so that a name the server would refuse is refused by the client before
anything is staged or sent.

The grammar is the Hub's as far as babyhub needs it, made strict where a name reaches a file system: a repo id
is `NAMESPACE/NAME`, each segment letters, digits, `-`, `_` and `.` (starting with a letter or digit, not
ending in `.`, no `..`, not ending in `.git`, at most 96 characters); a few namespaces are reserved because
they are URL prefixes. Patterns end with `\\Z`, not `$`, so that a trailing newline never passes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote

from hub_tools.errors import BabyhubError

REPO_TYPES = ("model", "dataset", "space")
# URL path prefix of each repo type: models at the root, datasets and Spaces under their plural.
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The plurals in API paths (`/api/datasets/...`) and in `[TYPE/]NS/NAME` references.
REPO_TYPE_PLURALS = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PLURAL_OF = {singular: plural for plural, singular in REPO_TYPE_PLURALS.items()}
# Namespaces that would collide with a URL prefix of the Hub.
RESERVED_NAMESPACES = frozenset({"api", "datasets", "spaces", "models", "lfs-upload"})

NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?\Z")
REF_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}\Z")
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}\Z")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}\Z")
PR_REF_PATTERN = re.compile(r"refs/pr/[1-9][0-9]*\Z")


class InvalidName(BabyhubError, ValueError):
    """A repo id, revision or repo type that the Hub (and the local hub) would refuse; the message says which."""


NAME_RULE = (
    "letters, digits, '-', '_' and '.' (at most 96, starting with a letter or digit, no '..', not ending in '.' "
    "or '.git')"
)


def check_name(segment: str, what: str = "repo id") -> str:
    """Return one segment of a repo id (a namespace or a name) if it is valid, else raise `InvalidName`."""
    if not _is_name(segment):
        raise InvalidName(f"invalid {what} segment {segment!r}: use {NAME_RULE}")
    return segment


def _is_name(segment) -> bool:
    return (
        isinstance(segment, str)
        and bool(NAME_PATTERN.match(segment))
        and ".." not in segment
        and not segment.endswith(".git")
    )


def check_repo_id(repo_id: str, *, example: str = "me/baby-dpo") -> str:
    """Return `repo_id` if it is `NAMESPACE/NAME` in the Hub's grammar, else raise `InvalidName` naming it.

    Args:
        repo_id: the id to check, e.g. `me/child-dpo-preferences`.
        example: a valid id the message shows when `repo_id` does not have two segments.

    Returns:
        The same id, unchanged.
    """
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2:
        raise InvalidName(f"invalid repo id {repo_id!r}: must be NAMESPACE/NAME, e.g. {example}")
    for what, segment in zip(("namespace", "name"), parts, strict=True):
        if not _is_name(segment):
            raise InvalidName(f"invalid repo id {repo_id!r}: the {what} {segment!r} must use {NAME_RULE}")
    if parts[0].lower() in RESERVED_NAMESPACES:
        raise InvalidName(f"invalid repo id {repo_id!r}: namespace {parts[0]!r} is reserved")
    return repo_id


def is_repo_id(text: str) -> bool:
    """True when `text` is a valid `NAMESPACE/NAME` (used to tell a Hub id from a local path)."""
    try:
        check_repo_id(text)
    except InvalidName:
        return False
    return True


def check_ref_name(name: str) -> str:
    """Return `name` if it can name a new branch or tag, else raise `InvalidName`.

    As git refuses them: `..`, `//`, a leading `refs/`, a trailing `/`, `.lock` or `.`; and, as the Hub refuses
    it, a 40-character hex name, which would read as a commit id.
    """
    if (
        not isinstance(name, str)
        or not REF_PATTERN.match(name)
        or ".." in name
        or "//" in name
        or name.endswith(("/", ".lock", "."))
        or name.startswith("refs/")
        or COMMIT_PATTERN.match(name)
    ):
        raise InvalidName(
            f"invalid branch or tag name {name!r}: letters, digits, '-', '_', '.' and '/' (no '..' or '//', not "
            "starting with 'refs/', not ending in '/', '.' or '.lock', not a 40-character commit id)"
        )
    return name


def check_revision(name: str) -> str:
    """Return a revision to read if valid: a branch or tag name, a full commit id, or a full ref; else `InvalidName`.

    Full refs are `refs/heads/BRANCH`, `refs/tags/TAG` and `refs/pr/N` (a pull request), as the Hub resolves
    them; other `refs/` names are refused.
    """
    if isinstance(name, str) and (COMMIT_PATTERN.match(name) or PR_REF_PATTERN.match(name)):
        return name
    bare = name
    if isinstance(name, str) and name.startswith(("refs/heads/", "refs/tags/")):
        bare = name.split("/", 2)[2]
    try:
        check_ref_name(bare)
    except InvalidName:
        raise InvalidName(
            f"invalid revision {name!r}: a branch, a tag, a 40-character commit id or refs/pr/N"
        ) from None
    return name


def check_repo_type(repo_type: str) -> str:
    """Return `repo_type` if it is `model`, `dataset` or `space`, else raise `InvalidName`."""
    if repo_type not in REPO_TYPES:
        raise InvalidName(f"invalid repo type {repo_type!r}: one of {', '.join(REPO_TYPES)}")
    return repo_type


@dataclass(frozen=True)
class RepoRef:
    """A repo on a Hub, and optionally one revision of it: `[TYPE/]NAMESPACE/NAME[@REVISION]`."""

    repo_id: str
    revision: str | None = None
    repo_type: str = "model"

    def __str__(self) -> str:
        prefix = URL_PREFIXES[self.repo_type]
        return f"{prefix}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def typed_id(self) -> str:
        """`models/NS/NAME`, `datasets/NS/NAME` or `spaces/NS/NAME`: the id with its type, as API paths spell it."""
        return f"{_PLURAL_OF[self.repo_type]}/{self.repo_id}"


def parse_repo_ref(text: str, *, repo_type: str = "model") -> RepoRef:
    """Parse `NS/NAME`, `NS/NAME@REVISION`, or with a type prefix (`datasets/NS/NAME`, `spaces/...`, `models/...`).

    Args:
        text: the reference, as a user writes it.
        repo_type: the type when `text` has no prefix.

    Returns:
        A `RepoRef`; `revision` is None when `text` names none.
    """
    if not isinstance(text, str):
        raise InvalidName(f"invalid repo reference {text!r}: expected [TYPE/]NAMESPACE/NAME[@REVISION]")
    body, at, revision = text.partition("@")
    parts = body.strip("/").split("/")
    if len(parts) == 3 and parts[0] in REPO_TYPE_PLURALS:
        repo_type, parts = REPO_TYPE_PLURALS[parts[0]], parts[1:]
    if len(parts) != 2:
        raise InvalidName(
            f"invalid repo reference {text!r}: expected NS/NAME (namespace/name), or datasets/NS/NAME, "
            "spaces/NS/NAME, models/NS/NAME, optionally followed by @REVISION"
        )
    check_repo_type(repo_type)
    repo_id = check_repo_id("/".join(parts))
    if at:
        check_revision(revision)
    return RepoRef(repo_id, revision if at else None, repo_type)


def repo_url(endpoint: str, repo_id: str, repo_type: str = "model") -> str:
    """The web address of a repo on `endpoint` (models at the root, datasets and Spaces under their prefix)."""
    return f"{endpoint.rstrip('/')}/{URL_PREFIXES[repo_type]}{repo_id}"


def revision_url(endpoint: str, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
    """The web address of one revision's file tree, as the Hub spells it (`.../tree/REVISION`)."""
    return f"{repo_url(endpoint, repo_id, repo_type)}/tree/{quote(revision, safe='')}"


def git_blob_hasher(size: int):
    """A sha1 primed with the git blob header: feed it the `size` bytes of content, then hexdigest() is the blob id."""
    return hashlib.sha1(b"blob %d\0" % size)


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data`: what the Hub reports as a small file's `oid`."""
    hasher = git_blob_hasher(len(data))
    hasher.update(data)
    return hasher.hexdigest()
