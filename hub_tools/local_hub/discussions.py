"""Discussions and pull requests: their records, kept beside the repo's content.

Each is one JSON file, `REPO_DIR/babyhub-discussions/N.json`, written atomically: it moves, and is deleted, with
its repo, and the store (files, commits, refs) never reads it. Discussions and pull requests share one numbering
per repo, as on the Hub; a pull request's changes live on the ref `refs/pr/N` (the store's), and its record keeps
the branch it targets and the commit it started from (the merge base).

A record has the shape of the Hub's answer to `get_discussion_details`, less what depends on the request (the
repo's current name, the diff):

    {"num", "title", "status": open|closed|merged|draft, "author": NAME, "createdAt", "isPullRequest",
     "events": [{"id", "type": comment|status-change|commit|title-change, "author", "createdAt", "data"}],
     "changes": {"base": "refs/heads/main", "mergeCommitId"?}, "baseCommit"}
"""

import json
import os
import secrets
import threading
import uuid
from pathlib import Path

from hub_tools.local_hub.errors import HubError
from hub_tools.local_hub.storage import now_iso

FOLDER = "babyhub-discussions"
STATUSES = ("open", "closed", "merged", "draft")


class Discussions:
    """The discussion records of every repo; one lock serialises numbering and writes."""

    def __init__(self):
        self.lock = threading.RLock()

    @staticmethod
    def _dir(repo) -> Path:
        return Path(repo.dir) / FOLDER

    def list(self, repo) -> list[dict]:
        """Every record of `repo`, by number."""
        folder = self._dir(repo)
        if not folder.is_dir():
            return []
        records = []
        for path in folder.glob("*.json"):
            if path.stem.isdigit():
                records.append(json.loads(path.read_text()))
        return sorted(records, key=lambda r: r["num"])

    def get(self, repo, num: int) -> dict:
        path = self._dir(repo) / f"{num}.json"
        if not path.is_file():
            raise HubError(404, f"Discussion #{num} not found in {repo.repo_id}")
        return json.loads(path.read_text())

    def save(self, repo, record: dict) -> None:
        folder = self._dir(repo)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{record['num']}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{record['num']}.json")

    def create(
        self,
        repo,
        *,
        title: str,
        author: str,
        description: str,
        pull_request: bool,
        taken: set[int] = frozenset(),
        target: str | None = None,
        base_commit: str | None = None,
    ) -> dict:
        """A new discussion (or pull request, targeting branch `target` from `base_commit`) with its first comment.

        `taken` are numbers already used otherwise (pull request refs whose record is gone): never reused.
        """
        with self.lock:
            used = {r["num"] for r in self.list(repo)} | set(taken)
            num = max(used, default=0) + 1
            record = {
                "num": num,
                "title": title,
                "status": "open",
                "author": author,
                "createdAt": now_iso(),
                "isPullRequest": pull_request,
                "events": [],
                "changes": {"base": f"refs/heads/{target}"} if pull_request else {},
                "baseCommit": base_commit,
            }
            record["events"].append(comment_event(author, description))
            self.save(repo, record)
            return record

    def delete(self, repo, num: int) -> None:
        """Forget a record (a pull request whose first commit was refused)."""
        with self.lock:
            (self._dir(repo) / f"{num}.json").unlink(missing_ok=True)

    def append(self, repo, num: int, event: dict, **changes) -> dict:
        """Add `event` to record `num` (and set the record's top-level `changes`); returns the event."""
        with self.lock:
            record = self.get(repo, num)
            record["events"].append(event)
            for key, value in changes.items():
                if key == "merge_commit":
                    record["changes"]["mergeCommitId"] = value
                else:
                    record[key] = value
            self.save(repo, record)
            return event

    def edit_comment(self, repo, num: int, comment_id: str, user: str, *, content: str | None, hide: bool) -> dict:
        """Edit or hide comment `comment_id` of record `num`; returns the updated event."""
        with self.lock:
            record = self.get(repo, num)
            event = next((e for e in record["events"] if e["id"] == comment_id and e["type"] == "comment"), None)
            if event is None:
                raise HubError(404, f"Comment {comment_id} not found in discussion #{num} of {repo.repo_id}")
            data = event["data"]
            if hide:
                data["hidden"] = True
                data["latest"].update(raw="", html="")
            else:
                data["edited"] = True
                data["latest"] = {**data["latest"], "raw": content, "updatedAt": now_iso(), "author": {"name": user}}
                data["history"].insert(0, dict(data["latest"]))
            self.save(repo, record)
            return event


def _event(kind: str, author: str, data: dict) -> dict:
    return {
        "id": secrets.token_hex(12),
        "type": kind,
        "createdAt": now_iso(),
        "author": {"name": author, "type": "user"},
        "data": data,
    }


def comment_event(author: str, text: str) -> dict:
    latest = {"raw": text, "html": "", "updatedAt": now_iso(), "author": {"name": author}}
    return _event("comment", author, {"edited": False, "hidden": False, "latest": latest, "history": [dict(latest)]})


def status_event(author: str, status: str) -> dict:
    return _event("status-change", author, {"status": status})


def commit_event(author: str, subject: str, oid: str) -> dict:
    return _event("commit", author, {"subject": subject, "oid": oid})


def title_event(author: str, old: str, new: str) -> dict:
    return _event("title-change", author, {"from": old, "to": new})
