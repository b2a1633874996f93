"""Users, organisations and tokens: who a request's token is, and what that user may read and write.

A token file has one token a line; after the token, a line may name its user, the user's organisations and the
token's role (as a Hub access token is read or write):

    # TOKEN [user=NAME] [orgs=ORG,ORG] [role=read|write]
    hf_alice_6c1f...   user=alice  orgs=babylm-lab
    hf_bob_readonly... user=bob    role=read
    hf_local_0a9e...                          # a bare token: the hub's own write user, `babyhub`

The rules are the Hub's: a write token writes to its user's namespace and to the user's organisations (a 403
elsewhere, even for public repos); a read token writes nowhere; a private repo is readable by the members of its
namespace only (to anyone else it does not exist). A *bare* token (today's one-token-per-line files) is the user
`babyhub` with write access to every namespace, as the local hub has always behaved; give people their own
`user=` lines to keep one person's repos from another's pushes. Anyone with a write token may open a pull request
or a discussion on a repo they can read, as on the Hub.
"""

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.repos import RESERVED_NAMESPACES, InvalidName, check_name

logger = logging.getLogger("babyhub.local_hub")

SESSION_COOKIE = "babyhub_session"  # a browser's sign-in: read on GET and HEAD only (never authorises a write)
HUB_USER = "babyhub"  # the user of a bare token: write access to every namespace
ROLES = ("read", "write")
LINE_FORMAT = "TOKEN [user=NAME] [orgs=ORG,ORG] [role=read|write]"
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,200}\Z")  # printable ASCII, no spaces


class TokenFileError(BabyhubError):
    """A token file line that cannot be read: the message names the file, the line and the fix."""


@dataclass(frozen=True)
class User:
    """A user as one token presents it: its name, organisations, the token's role, and whether it is the hub's user."""

    name: str
    role: str = "write"
    orgs: tuple[str, ...] = ()
    everywhere: bool = False  # the bare-token user `babyhub`: member of every namespace

    def member_of(self, namespace: str) -> bool:
        """Whether `namespace` is this user's own or one of its organisations (case-insensitively, as the Hub)."""
        ns = namespace.lower()
        return self.everywhere or ns == self.name.lower() or ns in {org.lower() for org in self.orgs}

    def can_write(self, namespace: str) -> bool:
        return self.role == "write" and self.member_of(namespace)

    def refusal(self, namespace: str, what: str) -> str:
        """Why this user may not write `what` in `namespace` (the 403's message)."""
        if self.role != "write":
            return f"{what}: the token of {self.name} is a read token; use a write token"
        orgs = ", ".join(self.orgs) or "none"
        return (
            f"{what}: {self.name} cannot write to the namespace {namespace} (you may write to {self.name} and to your "
            f"organisations: {orgs}); open a pull request instead"
        )


def _token_key(token: str) -> bytes:
    # Looked up by digest: no token is compared character by character, and none is kept in a dict key.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_token_line(line: str, where: str = "token") -> tuple[str, User]:
    """(token, user) of one token-file line; `TokenFileError` naming `where` when it cannot be read."""
    fields = line.split()
    token, options = fields[0], fields[1:]
    if not _TOKEN_RE.match(token):
        raise TokenFileError(
            f"{where}: the token must be 1-200 printable ASCII characters without spaces; a line is {LINE_FORMAT}"
        )
    values: dict[str, str] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in ("user", "orgs", "role") or key in values:
            raise TokenFileError(
                f"{where}: unexpected {option!r} (each of user=, orgs= and role= at most once); a line is "
                f"{LINE_FORMAT}"
            )
        values[key] = value
    role = values.get("role", "write")
    if role not in ROLES:
        raise TokenFileError(f"{where}: role must be read or write, got {role!r}")
    orgs = tuple(o for o in values.get("orgs", "").split(",") if o)
    name = values.get("user")
    for what, value in [("user name", name), *(("organisation", org) for org in orgs)]:
        if value is None:
            continue
        try:
            check_name(value, what)
        except InvalidName as err:
            raise TokenFileError(f"{where}: {err}") from None
        if value.lower() in RESERVED_NAMESPACES:
            raise TokenFileError(f"{where}: {what} {value!r} is reserved (a URL prefix of the Hub); choose another")
    if name is None:
        if orgs:
            raise TokenFileError(f"{where}: orgs= needs user= (a bare token is the hub's user {HUB_USER})")
        return token, User(HUB_USER, role, (), everywhere=True)
    return token, User(name, role, orgs)


def read_users(lines: Iterable[tuple[str, str]]) -> dict[bytes, User]:
    """{token digest: User} of (where, line) pairs; a user's organisations are the union of its lines'."""
    parsed = []
    seen: set[bytes] = set()
    for where, line in lines:
        token, user = parse_token_line(line, where)
        key = _token_key(token)
        if key in seen:
            raise TokenFileError(f"{where}: this token is already on an earlier line; give every token one line")
        seen.add(key)
        parsed.append((where, key, user))
    orgs: dict[str, set[str]] = {}
    for _, _, user in parsed:
        orgs.setdefault(user.name.lower(), set()).update(user.orgs)
    org_names = {o.lower() for names in orgs.values() for o in names}
    for where, _, user in parsed:
        if user.name.lower() in org_names:
            raise TokenFileError(f"{where}: {user.name!r} is both a user and an organisation; rename one")
    return {key: User(u.name, u.role, tuple(sorted(orgs[u.name.lower()])), u.everywhere) for _, key, u in parsed}


def token_file_lines(path: Path) -> list[tuple[str, str]]:
    """(where, line) of each token line of a file: blank lines and '#' comments skipped, comments after a token cut."""
    out = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append((f"{path}, line {number}", line))
    return out


class Users:
    """The tokens the hub accepts and their users: given lines, and a token file's (re-read when it changes).

    A token file that breaks while the hub runs keeps the last good set in force (and logs why); at start, the
    error is raised.
    """

    def __init__(self, tokens: Iterable[str] | None = None, token_file: Path | str | None = None):
        self.static = read_users((f"token #{i + 1}", t.strip()) for i, t in enumerate(tokens or []) if t and t.strip())
        self.file = Path(token_file) if token_file else None
        self._from_file: dict[bytes, User] = {}
        self._mtime: float | None = None
        self._reload(first=True)

    def _reload(self, first: bool = False) -> None:
        if self.file is None:
            return
        try:
            mtime = self.file.stat().st_mtime
        except FileNotFoundError:
            self._from_file, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            self._from_file = read_users(token_file_lines(self.file))
        except TokenFileError as err:
            if first:
                raise
            logger.error("local hub: %s (the tokens read before stay in force)", err)
        self._mtime = mtime

    def add(self, line: str) -> User:
        """Accept one more token (a token-file line); returns its user."""
        token, user = parse_token_line(line, "added token")
        self.static[_token_key(token)] = user
        return user

    def user_of(self, token: str) -> User | None:
        """The user of `token`, or None when the hub does not know it."""
        self._reload()
        key = _token_key(token)
        return self.static.get(key) or self._from_file.get(key)

    def known_namespaces(self) -> set[str]:
        """The users and organisations the hub knows (lower case)."""
        self._reload()
        out = set()
        for user in [*self.static.values(), *self._from_file.values()]:
            out.add(user.name.lower())
            out.update(o.lower() for o in user.orgs)
        return out


class Sessions:
    """Browser sign-ins: a random session id (the login cookie) for a token kept here, never in the browser.

    In memory only: a restarted hub asks people to sign in again. A token removed from the token file stops
    working for its sessions at once (the user is looked up by token on every request).
    """

    def __init__(self, max_age: float = 30 * 24 * 3600, max_sessions: int = 10_000):
        self.max_age, self.max_sessions = max_age, max_sessions
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._items) >= self.max_sessions:  # drop the oldest
                oldest = min(self._items, key=lambda k: self._items[k][1])
                del self._items[oldest]
            self._items[sid] = (token, time.time())
        return sid

    def token(self, sid: str) -> str | None:
        with self._lock:
            item = self._items.get(sid)
            if item is None or time.time() - item[1] > self.max_age:
                self._items.pop(sid, None)
                return None
            return item[0]

    def close(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)
