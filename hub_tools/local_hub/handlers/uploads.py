"""Writing: preupload, commits, and validate-yaml (the LFS batch and transfers are git's: `githttp.py`).

A client uploads a commit in up to three steps, as on the Hub: `preupload` says which files go through LFS
(`lfs.LfsRule`: by extension, size or the tree's `.gitattributes`, or binary content), the LFS batch at
`/{repo}.git/info/lfs/objects/batch` hands out signed upload URLs for the objects the store lacks (none for an
object already stored: that is how a retried push skips what it sent before), and the commit (NDJSON) carries small
files inline and names LFS files by their sha256.

The commit body is checked before it is parsed: the token and the repo first (before a byte of the body is read),
then the body streams in a line at a time, within `hub.limits.commit_body` in total and `commit_line` per line, and
is parsed in the thread pool a batch of lines at a time. A README whose metadata the Hub would refuse (invalid YAML,
aliases, nesting too deep, broken card rules) is refused with a 400 naming each rule.
"""

import base64
import binascii

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub import lfs
from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.gittrees import DirEntry, FileEntry
from hub_tools.local_hub.handlers import discussions
from hub_tools.local_hub.metadata import CARD_PATH, MAX_CARD_SIZE, check_readme
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.wire import base_url, iter_lines, parse_json, read_json
from hub_tools.repos import COMMIT_PATTERN, PR_REF_PATTERN, SHA256_PATTERN, repo_url

PARSE_BATCH = 4 * 1024 * 1024  # bytes of NDJSON lines handed to the thread pool at once


async def preupload(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    # Uploading changes nothing anyone sees: a user who may open a pull request may upload for it.
    repo, _ = hub.writable_repo(request, repo_type, repo_id, propose=True)
    data = await read_json(request, hub.limits.json_body)
    items = data.get("files")
    if not isinstance(items, list):
        raise bad_request("'files' must be a list")

    def modes() -> Response:
        try:
            view = hub.store.tree_view(repo, hub.store.resolve(repo, revision))
        except HubError:
            view = None  # a branch about to be created: every file is new
        attributes = view.file(".gitattributes") if view is not None else None
        rule = lfs.LfsRule.from_gitattributes(
            hub.store.read_blob(repo, attributes.oid) if attributes and not attributes.lfs else None
        )
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise bad_request("each entry of 'files' needs a 'path'")
            path = check_path(item["path"])
            size = item.get("size")
            size = size if type(size) is int and size >= 0 else 0
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=False)
            except (ValueError, TypeError):
                sample = b""
            use_lfs = path != ".gitattributes" and (rule.wants_lfs(path, size) or b"\0" in sample)
            answer = {"path": path, "uploadMode": "lfs" if use_lfs else "regular", "shouldIgnore": False}
            existing = view.file(path) if view is not None else None
            if existing is not None and use_lfs == bool(existing.lfs):
                answer["oid"] = existing.etag  # the sha256 of an LFS file, the blob id of a plain one
            out.append(answer)
        return JSONResponse({"files": out, "commitOid": None})

    return await hub.run(modes)


class CommitReader:
    """The header and store operations of an NDJSON commit body, fed a batch of lines at a time (in a thread).

    Every refusal is a 400 naming the line: malformed JSON, an unknown key, a bad path, invalid base64, an LFS
    object that was not uploaded. An `lfsFile` without `size` is a copy of an LFS file (`CommitOperationCopy`,
    `HfFileSystem.cp_file`), completed by `complete_copies`.
    """

    def __init__(self, store):
        self.store = store
        self.header: dict | None = None
        self.operations: list = []
        self.number = 0

    def feed(self, lines: list[bytes]) -> None:
        for line in lines:
            self.number += 1
            if line.strip():
                self._line(self.number, line)

    def _line(self, number: int, line: bytes) -> None:
        item = parse_json(line, f"on line {number}")
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict) or "key" not in item:
            raise bad_request(f"Malformed NDJSON on line {number}: expected {{'key': ..., 'value': {{...}}}}")
        key, value = item["key"], item["value"]
        if key == "header":
            self.header = value
        elif key == "file":
            path = check_path(value.get("path"))
            if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                raise bad_request(f"Line {number}: inline files must be base64 'content'")
            try:
                content = base64.b64decode(value["content"], validate=True)
            except (ValueError, binascii.Error):
                raise bad_request(f"Line {number}: invalid base64 content for {path}") from None
            self.operations.append(("add", path, {"content": content}))
        elif key == "lfsFile":
            path = check_path(value.get("path"))
            oid, size = value.get("oid"), value.get("size")
            if (
                not isinstance(oid, str)
                or not SHA256_PATTERN.match(oid)
                or not (size is None or type(size) is int)
                or value.get("algo", "sha256") != "sha256"
            ):
                raise bad_request(
                    f"Line {number}: lfsFile needs a sha256 'oid' (and an integer 'size', except for a copy)"
                )
            if size is None:
                self.operations.append(("copy", path, {"sha256": oid}))
                return
            if not self.store.has_lfs_object(oid, size):
                raise bad_request(f"LFS object {oid} for {path} was not uploaded (or its size differs)")
            self.operations.append(("add", path, {"sha256": oid, "size": size, "lfs": True}))
        elif key in ("deletedFile", "deletedFolder"):
            path = check_path(str(value.get("path", "")).rstrip("/"))
            self.operations.append(("delete" if key == "deletedFile" else "delete_folder", path, None))
        else:
            raise bad_request(f"Line {number}: unknown key {key!r}")

    def finish(self) -> dict:
        """The header, once every line is read; a 400 without one, or with a `parentCommit` that is no commit id."""
        header = self.header
        if header is None or not isinstance(header.get("summary", ""), str):
            raise bad_request("The commit needs a header line with a 'summary'")
        if not isinstance(header.get("description") or "", str):
            raise bad_request("'description' must be a string")
        parent = header.get("parentCommit")
        if parent is not None and not (isinstance(parent, str) and COMMIT_PATTERN.match(parent)):
            raise bad_request(f"'parentCommit' must be a 40-character commit id, not {parent!r}")
        return header


def complete_copies(store, repo, operations: list) -> list:
    """Turn each copy (an LFS oid without size) into an add of that LFS object, which this repo must hold.

    The object must be one the repo already points to from some branch, tag or pull request: a content-addressed
    store must not hand out another repo's (maybe private) object to whoever knows its hash.
    """
    if not any(kind == "copy" for kind, _, _ in operations):
        return operations
    held = store.lfs_objects(repo)
    out = []
    for kind, path, entry in operations:
        if kind == "copy":
            oid = entry["sha256"]
            if oid not in held or not store.has_lfs_object(oid):
                raise bad_request(
                    f"Cannot copy LFS object {oid} to {path}: {repo.repo_id} holds no file with it on any branch, "
                    "tag or pull request; upload the file instead"
                )
            kind, entry = "add", {"sha256": oid, "size": store.lfs_path(oid).stat().st_size, "lfs": True}
        out.append((kind, path, entry))
    return out


def check_card(store, repo, operations: list) -> None:
    """Refuse a README.md whose metadata the Hub would refuse (a 400 naming each broken rule)."""
    for kind, path, entry in operations:
        if kind != "add" or path != CARD_PATH:
            continue
        if "content" in entry:
            data = entry["content"]
        elif entry["size"] > MAX_CARD_SIZE:
            data = None
        else:
            data = store.lfs_path(entry["sha256"]).read_bytes()
        size = len(data) if data is not None else entry["size"]
        if size > MAX_CARD_SIZE:
            raise bad_request(f"README.md is {size} bytes: a model card may be at most {MAX_CARD_SIZE}")
        try:
            check_readme(data.decode("utf-8", "replace"), repo.repo_type)
        except InvalidMetadata as err:
            message = str(err)
            prefix = "Invalid metadata in README.md"
            raise bad_request(message if message.startswith(prefix) else f"{prefix}: {message}") from None


def check_deletions(store, repo, head: str, operations: list) -> None:
    """Refuse a pull request whose deletions name files its target lacks, before the pull request is opened."""
    view = store.tree_view(repo, head)
    for kind, path, _ in operations:
        if kind == "delete" and not isinstance(view.entry(path), FileEntry):
            raise HubError(404, f"File to delete not found: {path}", "EntryNotFound")
        if kind == "delete_folder" and not isinstance(view.entry(path.rstrip("/")), DirEntry):
            raise HubError(404, f"Folder to delete not found: {path}", "EntryNotFound")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


async def commit(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../commit/{revision}: a commit on a branch or on `refs/pr/N`; with `?create_pr=1`, a new pull request.

    A pull request is opened by anyone with a write token who can read the repo; its commit lands on `refs/pr/N`,
    never on the branch it targets. The token and the repo are checked before the body is read.
    """
    create_pr = _flag(request, "create_pr")
    pr_num = int(revision[len("refs/pr/") :]) if PR_REF_PATTERN.match(revision) else None
    record = None
    if pr_num is not None and not create_pr:
        repo, user, record = discussions.pull_request_for_push(hub, request, repo_type, repo_id, pr_num)
    else:
        repo, user = hub.writable_repo(request, repo_type, repo_id, propose=create_pr)
    if revision.startswith("refs/heads/"):
        revision = revision[len("refs/heads/") :]
    if create_pr and pr_num is not None:
        raise bad_request(f"Cannot open a pull request on {revision}: target a branch")
    reader = CommitReader(hub.store)
    batch, batch_bytes = [], 0
    async for line in iter_lines(request, hub.limits.commit_body, hub.limits.commit_line):
        batch.append(line)
        batch_bytes += len(line)
        if batch_bytes >= PARSE_BATCH:
            await hub.run(reader.feed, batch)
            batch, batch_bytes = [], 0
    await hub.run(reader.feed, batch)
    header = reader.finish()
    title = header.get("summary") or "Upload files"
    message = header.get("description") or ""

    def write() -> tuple[str, int | None]:
        operations = complete_copies(hub.store, repo, reader.operations)
        check_card(hub.store, repo, operations)
        parent, target, number = header.get("parentCommit"), revision, pr_num
        if create_pr:
            head = hub.store.resolve(repo, revision)
            if parent and parent != head:
                raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            check_deletions(hub.store, repo, head, operations)
            opened = discussions.open_pull_request(hub, repo, user, revision, title, message)
            number, target, parent = opened["num"], f"refs/pr/{opened['num']}", None
        try:
            oid = hub.store.commit(
                repo, target, operations, title=title, message=message, author=user.name, parent_commit=parent
            )
        except HubError:
            if create_pr:  # the pull request never had a commit: forget it (its number is not reused)
                hub.discussions.delete(repo, number)
            raise
        if number is not None:
            discussions.record_commit(hub, repo, number, user, title, oid)
        return oid, number

    oid, pr_num = await hub.run(write)
    url = repo_url(base_url(request), repo.repo_id, repo.repo_type)
    pr_url = f"{url}/discussions/{pr_num}" if pr_num is not None else None
    if hub.spaces is not None and repo.repo_type == "space" and pr_num is None:
        hub.spaces.changed(repo)
    return JSONResponse(
        {"commitUrl": f"{url}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url, "success": True}
    )


async def validate_yaml(hub, request: Request) -> Response:
    data = await read_json(request, hub.limits.json_body)
    content = data.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string")
    repo_type = data.get("repoType") or "model"
    if repo_type not in ("model", "dataset", "space"):
        raise bad_request("'repoType' must be model, dataset or space")

    def validate() -> Response:
        # `content` is the whole README: only its front matter (between the first two '---') is metadata.
        try:
            found, _ = read_front_matter(content)
            check_readme(content, repo_type)
        except InvalidMetadata as err:
            return JSONResponse({"errors": [{"message": str(err)}], "warnings": []}, status_code=400)
        if not found:
            return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
        return JSONResponse({"errors": [], "warnings": []})

    return await hub.run(validate)
