"""git smart HTTP and the LFS batch API over the git store, driven by the real `git` and Debian's `git-lfs`."""

import hashlib
import os
import threading
import time

import pytest

TOKEN = "hf_git_http_token_0123456789"


def serve(app):
    """Run an ASGI app on a free loopback port in a thread; (url, stop)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def check_token(token: str) -> str | None:
    """The minimal auth stub: one token, one user."""
    return "babyhub" if token == TOKEN else None


async def not_found(scope, receive, send):
    from starlette.responses import PlainTextResponse

    await PlainTextResponse("not a git path", 404)(scope, receive, send)


@pytest.fixture
def hub(tmp_path):
    """A GitStore and its git router behind uvicorn; yields (url, store)."""
    from hub_tools.local_hub.githttp import GitHttp
    from hub_tools.local_hub.gitstore import GitStore

    store = GitStore(tmp_path / "root")
    url, stop = serve(GitHttp(store, check_token=check_token).wrap(not_found))
    yield url, store
    stop()
    store.close()


def with_token(url: str) -> str:
    return url.replace("http://", f"http://babyhub:{TOKEN}@")


def _model_with_weights(store, repo_id="babyhub/baby", private=False):
    repo = store.create_repo("model", repo_id, private=private, sdk=None, author="babyhub")
    weights = os.urandom(300_000)
    store.commit(
        repo,
        "main",
        [
            ("add", "config.json", {"content": b'{"hidden_size": 32}'}),
            ("add", "model.safetensors", {"content": weights}),
        ],
        title="Upload the baby",
        message="",
        author="babyhub",
    )
    return repo, weights


def _log(git, cwd, rev="HEAD"):
    return git("log", "--first-parent", "--format=%H", rev, cwd=cwd).stdout.split()


def test_clone_with_lfs_push_a_change_and_fetch_what_the_store_commits(hub, git, tmp_path):
    url, store = hub
    repo, weights = _model_with_weights(store)
    work = tmp_path / "baby"

    # anonymous clone of a public model: git-lfs fetches the weights through the batch API
    git("clone", f"{url}/babyhub/baby", str(work))
    assert (work / "model.safetensors").read_bytes() == weights
    assert (work / "config.json").read_bytes() == b'{"hidden_size": 32}'
    assert _log(git, work) == [c["id"] for c in store.history(repo, store.resolve(repo, "main"))]

    # push a new weight file (LFS) and a plain file, with the token
    new_weights = os.urandom(200_000)
    (work / "model.safetensors").write_bytes(new_weights)
    (work / "notes.txt").write_text("trained 2000 steps\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "Checkpoint 2000", cwd=work)
    git("push", with_token(f"{url}/babyhub/baby"), "main", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()

    # the store's readers see the pushed commit: same id, the weights as an LFS file whose content is the pool's
    assert store.resolve(repo, "main") == head
    view = store.tree_view(repo, head)
    entry = view.file("model.safetensors")
    assert entry.lfs.oid == hashlib.sha256(new_weights).hexdigest() and entry.size == len(new_weights)
    assert b"".join(store.read_file(repo, entry)) == new_weights
    assert store.get_commit(repo, head)["title"] == "Checkpoint 2000"
    assert b"".join(store.read_file(repo, view.file("notes.txt"))) == b"trained 2000 steps\n"

    # a commit made through the store (as huggingface_hub makes them) comes back with git fetch/pull
    server_side = store.commit(
        repo, "main", [("add", "README.md", {"content": b"# Baby\n"})], title="Add card", message="", author="babyhub"
    )
    git("pull", "-q", "--ff-only", f"{url}/babyhub/baby", "main", cwd=work)
    assert git("rev-parse", "HEAD", cwd=work).stdout.strip() == server_side
    assert (work / "README.md").read_text() == "# Baby\n"
    assert _log(git, work) == [c["id"] for c in store.history(repo, server_side)]


def test_datasets_and_spaces_prefixes_with_and_without_dot_git(hub, git, tmp_path):
    url, store = hub
    for repo_type, prefix in (("dataset", "datasets"), ("space", "spaces")):
        repo = store.create_repo(repo_type, "babyhub/thing", private=False, sdk="gradio", author="babyhub")
        store.commit(repo, "main", [("add", "app.py", {"content": b"x = 1\n"})], title="t", message="", author="b")
        for suffix in ("", ".git"):
            target = tmp_path / f"{repo_type}{suffix}"
            git("clone", "-q", f"{url}/{prefix}/babyhub/thing{suffix}", str(target))
            assert (target / "app.py").read_text() == "x = 1\n"
    # a model of the same name does not exist: the prefix chooses the repo
    proc = git("clone", "-q", f"{url}/babyhub/thing", str(tmp_path / "none"), check=False)
    assert proc.returncode != 0


def test_private_repos_need_the_token_and_pushes_always_do(hub, git, tmp_path):
    url, store = hub
    repo, weights = _model_with_weights(store, "babyhub/secret", private=True)
    anonymous = git("clone", f"{url}/babyhub/secret", str(tmp_path / "a"), check=False)
    assert anonymous.returncode != 0 and "could not read Username" in anonymous.stderr  # git was asked for auth
    wrong = git(
        "clone", f"{url}/babyhub/secret".replace("http://", "http://u:hf_wrong@"), str(tmp_path / "b"), check=False
    )
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr
    git("clone", with_token(f"{url}/babyhub/secret"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == weights

    _model_with_weights(store, "babyhub/public")
    git("clone", f"{url}/babyhub/public", str(tmp_path / "d"))
    (tmp_path / "d" / "x.txt").write_text("x")
    git("add", "x.txt", cwd=tmp_path / "d")
    git("commit", "-qm", "x", cwd=tmp_path / "d")
    refused = git("push", f"{url}/babyhub/public", "main", cwd=tmp_path / "d", check=False)
    assert refused.returncode != 0
    public = store.get_repo("model", "babyhub/public")
    assert store.history(public, store.resolve(public, "main"))[0]["title"] == "Upload the baby"


def test_the_hubs_push_rules(hub, git, tmp_path):
    url, store = hub
    repo, _ = _model_with_weights(store)
    work = tmp_path / "w"
    git("clone", "-q", with_token(f"{url}/babyhub/baby"), str(work))
    before = store.resolve(repo, "main")

    # a plain (non-LFS) file over 10 MB is refused, as on the Hub
    (work / "big.dat").write_bytes(b"\1" * (10 * 1024 * 1024 + 1))
    git("add", "big.dat", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    proc = git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0 and "must be stored with git-lfs" in proc.stderr
    assert store.resolve(repo, "main") == before
    git("reset", "-q", "--hard", "HEAD~1", cwd=work)

    # an LFS pointer whose object was never uploaded (the pre-push hook skipped) is refused
    (work / "w2.safetensors").write_bytes(os.urandom(1000))
    git("add", "w2.safetensors", cwd=work)
    git("commit", "-qm", "pointer only", cwd=work)
    proc = git("push", "--no-verify", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0 and "was not uploaded" in proc.stderr
    assert store.resolve(repo, "main") == before
    git("reset", "-q", "--hard", "HEAD~1", cwd=work)

    # main cannot be deleted; another branch can, and tags come and go
    proc = git("push", "origin", ":main", cwd=work, check=False)
    assert proc.returncode != 0 and "main branch cannot be deleted" in proc.stderr
    git("push", "-q", "origin", "main:refs/heads/checkpoint-2000", cwd=work)
    git("tag", "v1", cwd=work)
    git("push", "-q", "origin", "v1", cwd=work)
    assert store.refs(repo) == {
        "branches": {"main": before, "checkpoint-2000": before},
        "tags": {"v1": before},
        "pulls": {},
    }
    git("push", "-q", "origin", ":checkpoint-2000", cwd=work)
    assert "checkpoint-2000" not in store.refs(repo)["branches"]
    git("tag", "-a", "v2", "-m", "annotated", cwd=work)  # an annotated tag: the Hub API shows its commit
    git("push", "-q", "origin", "v2", cwd=work)
    assert store.refs(repo)["tags"]["v2"] == before and store.resolve(repo, "v2") == before
    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", f"{url}/babyhub/baby", str(shallow))
    assert _log(git, shallow) == [before]

    # a push made from a stale clone is refused (compare-and-swap on the branch head)
    store.commit(repo, "main", [("add", "a.txt", {"content": b"a"})], title="server", message="", author="b")
    (work / "b.txt").write_text("b")
    git("add", "b.txt", cwd=work)
    git("commit", "-qm", "stale", cwd=work)
    proc = git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0 and ("rejected" in proc.stderr or "stale" in proc.stderr)
    assert store.history(repo, store.resolve(repo, "main"))[0]["title"] == "server"


def test_lfs_batch_auth_grants_and_limits(hub, tmp_path):
    import httpx

    from hub_tools.local_hub.githttp import GitHttp
    from hub_tools.local_hub.gitstore import GitStore

    url, store = hub
    repo, weights = _model_with_weights(store, "babyhub/secret", private=True)
    oid, size = hashlib.sha256(weights).hexdigest(), len(weights)
    batch = f"{url}/babyhub/secret.git/info/lfs/objects/batch"
    body = {"operation": "download", "objects": [{"oid": oid, "size": size}], "hash_algo": "sha256"}
    headers = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
    with httpx.Client(timeout=30) as client:
        r = client.post(batch, json=body, headers=headers)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers and "message" in r.json()
        r = client.post(batch, json=body, headers={**headers, "Authorization": "Bearer hf_\u00e9t\u00e9".encode()})
        assert r.status_code == 401  # a non-ASCII token is a refusal, not a crash
        r = client.post(batch, json=body, headers={**headers, "Authorization": f"Bearer {TOKEN}"})
        href = r.json()["objects"][0]["actions"]["download"]["href"]
        assert client.get(href).content == weights
        assert client.get(href.replace("sig=", "sig=0")).status_code == 403  # a tampered grant
        # an object the repo does not reference is not served, even though the pool has it
        other = store.put_lfs_bytes(b"someone else's weights")
        r = client.post(
            batch,
            json={**body, "objects": [{"oid": other.oid, "size": other.size}]},
            headers={
                **headers,
                "Authorization": f"Bearer {TOKEN}",
            },
        )
        assert r.json()["objects"][0]["error"]["code"] == 404
        # uploads need the token; a grant signed before a restart still works after it
        up = {"operation": "upload", "objects": [{"oid": hashlib.sha256(b"new").hexdigest(), "size": 3}]}
        assert client.post(batch, json=up, headers=headers).status_code == 401
        r = client.post(batch, json=up, headers={**headers, "Authorization": f"Bearer {TOKEN}"})
        put = r.json()["objects"][0]["actions"]["upload"]["href"]
        restarted = GitHttp(GitStore(store.root, own=False), check_token=check_token)
        assert restarted._key == GitHttp(store, check_token=check_token)._key
        assert client.put(put, content=b"bad").status_code == 400  # content that does not match its oid
        assert client.put(put, content=b"new").status_code == 200
        assert store.has_lfs_object(hashlib.sha256(b"new").hexdigest(), 3)
        # a huge batch body is refused before it is parsed
        r = client.post(
            batch,
            content=b"{" + b" " * (9 * 1024 * 1024) + b"}",
            headers={**headers, "Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 413


def test_routes_and_tokens():
    from hub_tools.local_hub.githttp import GitHttpError, parse_route, token_of

    assert parse_route("GET", "/ns/name.git/info/refs").repo_id == "ns/name"
    assert parse_route("POST", "/datasets/ns/name/git-upload-pack").repo_type == "dataset"
    route = parse_route("PUT", "/spaces/ns/name.git/info/lfs/objects/" + "a" * 64)
    assert (route.repo_type, route.action, route.oid) == ("space", "lfs-upload", "a" * 64)
    assert parse_route("GET", "/ns/name/resolve/main/x") is None
    assert parse_route("GET", "/api/models/ns/name") is None
    import base64

    basic = base64.b64encode(b"anyone:hf_abc").decode()
    assert token_of({"authorization": f"Basic {basic}"}) == "hf_abc"
    assert token_of({"authorization": "Bearer hf_abc"}) == "hf_abc"
    assert token_of({}) is None
    for bad in ("Basic !!!", "Bearer hf_\u00e9", "Bearer "):
        with pytest.raises(GitHttpError) as err:
            token_of({"authorization": bad})
        assert err.value.status == 401
