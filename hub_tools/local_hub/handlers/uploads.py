"""Writing: preupload, commits, and validate-yaml (the LFS batch and transfers are git's: `githttp.py`).

A client uploads a commit in up to three steps, as on the Hub: `preupload` says which files go through LFS
(`lfs.LfsRule`: by extension, size or the tree's `.gitattributes`, or binary content), the LFS batch at
`/{repo}.git/info/lfs/objects/batch` hands out signed upload URLs for the objects the store lacks (none for an
object already stored: that is how a retried push skips what it sent before), and the commit (NDJSON) carries small
files inline and names LFS files by their sha256.

The commit body is checked before it is parsed: the token and the repo first (before a byte of the body is read),
then the body streams in a line at a time, within `hub.limits.commit_body` in total and `commit_line` per line, and
is parsed in the thread pool a batch of lines at a time. A README whose metadata does not load (invalid YAML,
aliases, nesting too deep) is refused with a 400, as the Hub refuses invalid metadata.
"""

import base64
import binascii

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub import lfs
from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.wire import base_url, iter_lines, parse_json, read_json
from hub_tools.repos import SHA256_PATTERN, repo_url

PARSE_BATCH = 4 * 1024 * 1024  # bytes of NDJSON lines handed to the thread pool at once


async def preupload(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
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
    object that was not uploaded. (A README.md whose metadata does not load is refused by the store's commit.)
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
                or type(size) is not int
                or value.get("algo", "sha256") != "sha256"
            ):
                raise bad_request(f"Line {number}: lfsFile needs a sha256 'oid' and an integer 'size'")
            if not self.store.has_lfs_object(oid, size):
                raise bad_request(f"LFS object {oid} for {path} was not uploaded (or its size differs)")
            self.operations.append(("add", path, {"sha256": oid, "size": size, "lfs": True}))
        elif key in ("deletedFile", "deletedFolder"):
            path = check_path(str(value.get("path", "")).rstrip("/"))
            self.operations.append(("delete" if key == "deletedFile" else "delete_folder", path, None))
        else:
            raise bad_request(f"Line {number}: unknown key {key!r}")

    def finish(self) -> dict:
        """The header, once every line is read; a 400 without one."""
        header = self.header
        if header is None or not isinstance(header.get("summary", ""), str):
            raise bad_request("The commit needs a header line with a 'summary'")
        if not isinstance(header.get("description") or "", str):
            raise bad_request("'description' must be a string")
        return header


async def commit(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo, user = hub.writable_repo(request, repo_type, repo_id)  # the token and the repo before the body
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise bad_request("Pull requests are not supported by the local hub")
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
    oid = await hub.run(
        lambda: hub.store.commit(
            repo,
            revision,
            reader.operations,
            title=header.get("summary") or "Upload files",
            message=header.get("description") or "",
            author=user,
            parent_commit=header.get("parentCommit"),
        )
    )
    url = f"{repo_url(base_url(request), repo_id, repo_type)}/commit/{oid}"
    return JSONResponse({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None, "success": True})


async def validate_yaml(hub, request: Request) -> Response:
    data = await read_json(request, hub.limits.json_body)
    content = data.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string")

    def validate() -> Response:
        # `content` is the whole README: only its front matter (between the first two '---') is metadata.
        try:
            found, _ = read_front_matter(content)
        except InvalidMetadata as err:
            return JSONResponse({"errors": [{"message": str(err)}], "warnings": []}, status_code=400)
        if not found:
            return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
        return JSONResponse({"errors": [], "warnings": []})

    return await hub.run(validate)
