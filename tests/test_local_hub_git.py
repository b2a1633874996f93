"""The local hub is a git server (issue 14): `git clone`, `git push` and huggingface_hub see the same repos.

Driven by the real `git` and Debian's `git-lfs` against `start_background` (the server people run), and by
`babyhub hub serve` / `babyhub push` in processes of their own for the restart in the middle of a push.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

TOKEN = "hf_git_server_token_0123456789"


@pytest.fixture
def hub(tmp_path):
    from hub_tools.local_hub.server import start_background

    running = start_background(tmp_path / "root", tokens=[TOKEN])
    yield running
    running.stop()


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=TOKEN)


def with_token(url: str) -> str:
    """A clone URL carrying the token as HTTP basic password, as the Hub accepts it."""
    return url.replace("http://", f"http://babyhub:{TOKEN}@")


def _log(git, cwd, *args):
    return git("log", "--format=%H", *args, cwd=cwd).stdout.split()


def test_clone_a_model_with_lfs_weights_push_a_change_and_download_it(hub, api, git, tmp_path):
    from huggingface_hub import hf_hub_download

    api.create_repo("babyhub/baby")
    weights = os.urandom(400_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id="babyhub/baby")
    api.upload_file(path_or_fileobj=b'{"hidden_size": 8}', path_in_repo="config.json", repo_id="babyhub/baby")
    work = tmp_path / "baby"
    git("clone", "-q", f"{hub.url}/babyhub/baby", str(work))  # public: no token needed to clone
    assert (work / "model.safetensors").read_bytes() == weights  # uploaded by huggingface_hub, smudged by git-lfs
    pointer = git("show", "HEAD:model.safetensors", cwd=work).stdout
    assert f"oid sha256:{hashlib.sha256(weights).hexdigest()}" in pointer  # an LFS pointer in git, as on the Hub
    assert _log(git, work) == [c.commit_id for c in api.list_repo_commits("babyhub/baby")]

    git("remote", "set-url", "origin", with_token(f"{hub.url}/babyhub/baby"), cwd=work)
    (work / "model.safetensors").write_bytes(weights[::-1])
    (work / "README.md").write_text("---\nlicense: mit\n---\n# Baby\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "Retrained from git", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    pushed = hf_hub_download("babyhub/baby", "model.safetensors", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path)
    assert open(pushed, "rb").read() == weights[::-1]
    info = api.model_info("babyhub/baby")
    assert info.sha == git("rev-parse", "HEAD", cwd=work).stdout.strip() and info.card_data["license"] == "mit"
    tree = {f.path: f for f in api.list_repo_tree("babyhub/baby")}
    assert tree["model.safetensors"].lfs.sha256 == hashlib.sha256(weights[::-1]).hexdigest()
    assert tree["README.md"].blob_id == git("rev-parse", "HEAD:README.md", cwd=work).stdout.strip()


def test_git_log_of_a_clone_lists_the_commits_the_hub_lists_merges_included(hub, api, git, tmp_path):
    api.create_repo("babyhub/history")
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="babyhub/history")
    work = tmp_path / "history"
    git("clone", "-q", with_token(f"{hub.url}/babyhub/history"), str(work))
    (work / "x.txt").write_text("from git\n")
    git("add", "x.txt", cwd=work)
    git("commit", "-qm", "From git", cwd=work)
    for name in ("b.txt", "c.txt"):  # meanwhile the hub's main moves on (same second, most likely)
        api.upload_file(path_or_fileobj=name.encode(), path_in_repo=name, repo_id="babyhub/history")
    git("pull", "-q", "--no-rebase", "--no-edit", "origin", "main", cwd=work)  # a merge commit
    git("push", "-q", "origin", "main", cwd=work)
    assert len(git("rev-list", "--parents", "-n1", "HEAD", cwd=work).stdout.split()) == 3  # a merge: two parents
    commits = api.list_repo_commits("babyhub/history")
    assert [c.commit_id for c in commits] == _log(git, work)
    assert [c.title for c in commits][:1] == [git("log", "-1", "--format=%s", cwd=work).stdout.strip()]
    api.create_branch("babyhub/history", branch="ckpt")
    git("fetch", "-q", "origin", cwd=work)
    assert [c.commit_id for c in api.list_repo_commits("babyhub/history", revision="ckpt")] == _log(
        git, work, "origin/ckpt"
    )


@pytest.mark.parametrize("repo_type,prefix", [("dataset", "datasets/"), ("space", "spaces/")])
def test_datasets_and_spaces_clone_under_their_prefix(hub, api, git, tmp_path, repo_type, prefix):
    repo_id = f"babyhub/cloned-{repo_type}"
    api.create_repo(repo_id, repo_type=repo_type, space_sdk="gradio" if repo_type == "space" else None)
    api.upload_file(path_or_fileobj=b"content\n", path_in_repo="file.txt", repo_id=repo_id, repo_type=repo_type)
    work = tmp_path / repo_type
    git("clone", "-q", f"{hub.url}/{prefix}{repo_id}", str(work))
    assert (work / "file.txt").read_text() == "content\n"


def test_private_repos_clone_with_the_token_only(hub, api, git, tmp_path):
    api.create_repo("babyhub/hidden", private=True)
    failed = git("clone", "-q", f"{hub.url}/babyhub/hidden", str(tmp_path / "no"), check=False)
    assert failed.returncode != 0 and not (tmp_path / "no" / ".gitattributes").exists()
    git("clone", "-q", with_token(f"{hub.url}/babyhub/hidden"), str(tmp_path / "yes"))
    assert (tmp_path / "yes" / ".gitattributes").is_file()


def test_an_lfs_upload_grant_survives_a_restart(tmp_path):
    """The key that signs transfer grants is kept (0600) under the root: a PUT granted before a restart goes in."""
    from hub_tools.local_hub.server import start_background

    root = tmp_path / "root"
    hub = start_background(root, tokens=[TOKEN])
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    try:
        httpx.post(f"{hub.url}/api/repos/create", json={"name": "grant"}, headers={"authorization": f"Bearer {TOKEN}"})
        batch = httpx.post(
            f"{hub.url}/babyhub/grant.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
            headers={"authorization": f"Bearer {TOKEN}"},
        ).json()
        href = batch["objects"][0]["actions"]["upload"]["href"]
    finally:
        hub.stop()
    assert oct((root / "upload.key").stat().st_mode & 0o777) == "0o600"
    hub = start_background(root, tokens=[TOKEN])  # another process would do the same: the key is on disk
    try:
        path_and_query = href.split("/", 3)[3]
        assert httpx.put(f"{hub.url}/{path_and_query}", content=data).status_code == 200
        assert hub.hub.store.has_lfs_object(oid, len(data))
    finally:
        hub.stop()


# ---- a restart in the middle of `babyhub push` --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root, port, token_file, log):
    """`babyhub hub serve` in a process of its own, once it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_tools", "hub", "serve", "--root", str(root), "--port", str(port)]
        + ["--token-file", str(token_file)],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "babyhub hub serve did not start"
            time.sleep(0.05)


def _upload_in_flight(root, at_least: int) -> bool:
    return any(p.is_file() and p.stat().st_size >= at_least for p in (root / "tmp").glob("*"))


def test_a_restart_in_the_middle_of_a_200_mb_push_ends_with_the_push_complete_and_one_commit(tmp_path):
    from huggingface_hub import HfApi

    root, port = tmp_path / "root", _free_port()
    token_file = tmp_path / "tokens"
    token_file.write_text(TOKEN + "\n")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    sha = hashlib.sha256()
    with open(folder / "model.safetensors", "wb") as f:
        for _ in range(200):
            block = os.urandom(1 << 20)
            sha.update(block)
            f.write(block)
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    log = open(tmp_path / "serve.log", "wb")
    server = _serve(root, port, token_file, log)
    push = subprocess.Popen(
        [sys.executable, "-m", "hub_tools", "push", str(folder), "--repo-id", "babyhub/restarted"]
        + ["--repo-type", "model"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not _upload_in_flight(root, 16 << 20):  # the weights are on their way in
            assert push.poll() is None, push.communicate()
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        server.wait(30)
        server = _serve(root, port, token_file, log)
        out, err = push.communicate(timeout=600)
        assert push.returncode == 0, err.decode()
        assert b"Traceback" not in err
        api = HfApi(endpoint=f"http://127.0.0.1:{port}", token=TOKEN)
        assert [c.title for c in api.list_repo_commits("babyhub/restarted")] == ["Upload model", "initial commit"]
        weights = next(f for f in api.list_repo_tree("babyhub/restarted") if f.path == "model.safetensors")
        assert weights.lfs.sha256 == sha.hexdigest() and weights.size == 200 << 20
        assert not list((root / "tmp").iterdir())  # the interrupted upload's temp file did not survive the restart
    finally:
        for proc in (push, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        log.close()
