"""No single request stalls the local hub, and nothing is parsed before it is checked (issue 14).

Each test here is one finding of the issue's "Why": a request that held the event loop, a body read before its
token was checked, a document that cost far more to parse than it weighs, a connection that never finished its head.
None of them is timed: a stalled loop shows as a request that is not answered while another one is held, a body
read before its check as a refusal that arrives before the body was sent.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

TOKEN = "hf_limits_token_0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub_tools.local_hub.server import ServeOptions, start_background

    running = start_background(
        tmp_path_factory.mktemp("limits") / "root", tokens=[TOKEN], options=ServeOptions(head_timeout=1.5)
    )
    for name, private in (("open", False), ("secret", True)):
        r = httpx.post(
            f"{running.url}/api/repos/create",
            json={"name": name, "organization": "team", "private": private},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
    yield running
    running.stop()


def _ndjson(*lines) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def _commit(hub, *files, repo="team/open", header=None) -> httpx.Response:
    import base64

    lines = [{"key": "header", "value": header or {"summary": "c"}}]
    for path, content in files:
        lines.append({"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode()}})
    return httpx.post(f"{hub.url}/api/models/{repo}/commit/main", headers=AUTH, content=_ndjson(*lines))


# ---- the event loop ----------------------------------------------------------------------------------------------
def test_a_slow_store_call_does_not_stall_other_requests(hub):
    """While one request waits on the store, the loop answers others (the old server ran store work on the loop)."""
    store = hub.hub.store
    entered, release = threading.Event(), threading.Event()
    real_resolve = type(store).resolve

    def slow_resolve(self, repo, revision):
        if revision == "slow":
            entered.set()
            release.wait(60)
            revision = "main"
        return real_resolve(self, repo, revision)

    answers = []
    type(store).resolve = slow_resolve
    try:
        held = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{hub.url}/api/models/team/open/tree/slow", timeout=60))
        )
        held.start()
        assert entered.wait(20)
        refs = httpx.get(f"{hub.url}/api/models/team/open/refs", timeout=10)  # answered while the listing waits
        assert refs.status_code == 200 and not answers
    finally:
        release.set()
        type(store).resolve = real_resolve
    held.join(30)
    assert answers[0].status_code == 200


def test_requests_beyond_the_in_flight_limit_get_a_503_at_once(hub):
    store = hub.hub.store
    entered, release = threading.Event(), threading.Event()
    real_resolve = type(store).resolve

    def slow_resolve(self, repo, revision):
        if revision == "held":
            entered.set()
            release.wait(60)
            revision = "main"
        return real_resolve(self, repo, revision)

    limits, before = hub.hub.limits, hub.hub.limits.max_requests
    type(store).resolve = slow_resolve
    limits.max_requests = 1
    try:
        held = threading.Thread(target=lambda: httpx.get(f"{hub.url}/api/models/team/open/tree/held", timeout=60))
        held.start()
        assert entered.wait(20)
        busy = httpx.get(f"{hub.url}/api/models/team/open/refs", timeout=10)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    finally:
        release.set()
        type(store).resolve = real_resolve
        limits.max_requests = before
    held.join(30)
    assert httpx.get(f"{hub.url}/api/models/team/open/refs").status_code == 200


def test_paths_info_takes_a_bounded_number_of_paths(hub):
    from hub_tools.local_hub.handlers.files import MAX_PATHS_INFO

    assert _commit(hub, ("sub/a.txt", b"a")).status_code == 200
    url = f"{hub.url}/api/models/team/open/paths-info/main"
    ok = httpx.post(url, json={"paths": ["sub/a.txt", "sub", "nope"] * 1000})
    assert [e["path"] for e in ok.json()] == ["sub/a.txt", "sub"]  # each once, in the order asked
    too_many = httpx.post(url, json={"paths": [f"f{i}" for i in range(MAX_PATHS_INFO + 1)]})
    assert too_many.status_code == 400 and "at most" in too_many.json()["error"]


# ---- bodies: checked before they are read -------------------------------------------------------------------------
def _status_before_the_body(hub, method: str, path: str, headers: dict, declared: int) -> int:
    """Send a request head announcing `declared` bytes and only a few of them; the status the hub answers with."""
    host, port = hub.url.split("//")[1].rsplit(":", 1)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.encode() + b'{"a": ')
        answer = sock.recv(4096)  # an answer without the body: nothing waited for the rest of it
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "method,path,token,status",
    [
        ("POST", "/api/models/team/open/commit/main", False, 401),
        ("POST", "/api/models/team/open/preupload/main", False, 401),
        ("POST", "/api/repos/create", False, 401),
        ("PUT", "/api/models/team/open/settings", False, 401),
        ("POST", "/team/secret.git/info/lfs/objects/batch", False, 401),
        ("POST", "/team/open.git/git-receive-pack", False, 401),
        ("POST", "/team/open.git/info/lfs/objects/batch", False, 413),  # anonymous downloads: a small limit
        ("POST", "/api/validate-yaml", False, 413),
        ("POST", "/api/models/team/open/paths-info/main", False, 413),
        ("POST", "/api/repos/create", True, 413),
        ("POST", "/api/models/team/open/preupload/main", True, 413),
    ],
)
def test_a_body_is_checked_before_it_is_read(hub, method, path, token, status):
    headers = {"Content-Type": "application/json", **(AUTH if token else {})}
    # 400 MB: under the old server's one limit for every body (512 MB), far over any of the new per-endpoint ones
    assert _status_before_the_body(hub, method, path, headers, declared=400_000_000) == status


def test_json_endpoints_have_small_body_limits(hub):
    padding = "x" * (hub.hub.limits.json_body + 1)
    response = httpx.post(f"{hub.url}/api/repos/create", json={"name": "big", "pad": padding}, headers=AUTH)
    assert response.status_code == 413
    response = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": padding})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/repos/create", b"[" * 100_000 + b"]" * 100_000),
        ("/api/models/team/open/preupload/main", b'{"files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/api/models/team/open/commit/main", b'{"key": "header", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/api/models/team/open/paths-info/main", b'{"paths": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/team/open.git/info/lfs/objects/batch", b'{"objects": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(hub, path, body):
    response = httpx.post(
        f"{hub.url}{path}", content=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=30
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


BILLION_LAUGHS = "---\n" + "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
) + "---\n# card\n"  # fmt: skip


@pytest.mark.parametrize(
    "readme,message",
    [
        (BILLION_LAUGHS, "aliases are not allowed"),
        ("---\na: &a [*a]\n---\n", "aliases are not allowed"),  # a recursive alias
        ("---\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n", "nested"),
        ("---\nkey: [unclosed\n---\n", "Invalid YAML"),
    ],
)
def test_readme_metadata_that_does_not_load_is_refused_at_commit_time(hub, readme, message):
    before = httpx.get(f"{hub.url}/api/models/team/open").json()["sha"]
    response = _commit(hub, ("README.md", readme.encode()))
    assert response.status_code == 400 and "Invalid metadata in README.md" in response.json()["error"]
    assert message in response.json()["error"]
    assert httpx.get(f"{hub.url}/api/models/team/open").json()["sha"] == before
    check = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": readme, "repoType": "model"})
    assert check.status_code == 400 and message in check.json()["errors"][0]["message"]


def test_a_stored_readme_with_aliases_costs_repo_info_nothing(hub):
    """A README written before the rule (an old root, migrated) is shown without cardData, not parsed into GBs."""
    from dulwich.objects import Blob

    from hub_tools.local_hub.gitplumbing import new_commit, write_objects
    from hub_tools.local_hub.gittrees import MODE_FILE, TreeEditor

    store = hub.hub.store
    repo = store.get_repo("model", "team/open")
    handle = store._handle(repo)
    head = store.resolve(repo, "main")
    blob = Blob.from_string(BILLION_LAUGHS.replace("[x,x", "[" + "x," * 50 + "x").encode())
    editor = TreeEditor(lambda oid: store._tree(handle, oid), store.commit_info(repo, head).tree)
    editor.put("README.md", MODE_FILE, blob.id.decode())
    trees, root = editor.build()
    commit = new_commit(root, [head], "old card", "", "babyhub", time.time())
    write_objects(handle.git, [blob, *trees, commit])
    store._move_ref(handle, "refs/heads/main", head, commit.id.decode())
    info = httpx.get(f"{hub.url}/api/models/team/open", timeout=30)
    assert info.status_code == 200 and "cardData" not in info.json()


# ---- connections ---------------------------------------------------------------------------------------------------
def test_half_sent_request_heads_are_closed_and_others_are_served(hub):
    host, port = hub.url.split("//")[1].rsplit(":", 1)
    slow = []
    for i in range(60):
        sock = socket.create_connection((host, int(port)), timeout=20)
        if i % 2:  # half a head; or nothing at all
            sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(sock)
    try:
        assert httpx.get(f"{hub.url}/api/models", timeout=10).status_code == 200
        for sock in slow:
            assert sock.recv(1024) == b""  # closed by the hub once the head timeout passed
    finally:
        for sock in slow:
            sock.close()


def test_error_headers_are_sanitised_so_the_connection_answers(hub):
    for revision in ("main%0D", "main%0D%0AX-Injected:%201", "main%20", "main%C2%85"):
        response = httpx.get(f"{hub.url}/api/models/team/open/revision/{revision}")
        assert response.status_code in (400, 404), revision
        message = response.headers["x-error-message"]
        assert "\r" not in message and "\n" not in message and message == message.strip()
        assert "x-injected" not in response.headers


_SERVER = """
import resource, sys, time
soft, hard = int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
from hub_tools.local_hub.server import ServeOptions, start_background
hub = start_background(sys.argv[1], port=int(sys.argv[2]), options=ServeOptions(
    head_timeout=2.0, max_connections=int(sys.argv[5]), descriptors=int(sys.argv[6]), log_interval=30.0))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
time.sleep(120)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path, soft, hard, max_connections, descriptors):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(tmp_path / "root"), str(port)]
        + [str(soft), str(hard), str(max_connections), str(descriptors)],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "stderr", "wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    limit = int(proc.stdout.readline())
    return proc, port, limit


def test_the_descriptor_limit_is_raised_to_the_hard_limit(tmp_path):
    proc, _, limit = _start(tmp_path, 256, 4096, 100, 65536)
    try:
        assert limit == 4096
    finally:
        proc.kill()
        proc.wait(30)


def test_out_of_descriptors_the_log_stays_quiet_and_the_hub_recovers(tmp_path):
    """More connections than descriptors: accept() fails; said once per interval (not ~5 MB/s), then served again."""
    proc, port, limit = _start(tmp_path, 96, 96, 1000, 96)  # the cap above the limit: accept() runs out
    assert limit == 96
    clients = []
    try:
        for _ in range(300):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(4)
        assert (tmp_path / "stderr").stat().st_size < 20_000, (tmp_path / "stderr").read_text()[:3000]
        assert "out of system resource" in (tmp_path / "stderr").read_text()
        for sock in clients:
            sock.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the hub never recovered"
            time.sleep(0.5)
        assert (tmp_path / "stderr").stat().st_size < 20_000
    finally:
        for sock in clients:
            sock.close()
        proc.kill()
        proc.wait(30)
