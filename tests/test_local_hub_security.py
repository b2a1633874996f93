"""Auth and safety of the local hub: the Hub's error shapes, no escape from the root, never a 500."""

import base64
import hashlib
import json

import httpx
import pytest

TOKEN = "hf_security_token"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub_tools.local_hub.server import start_background

    base = tmp_path_factory.mktemp("security")
    running = start_background(base / "root", tokens=[TOKEN])
    running.base = base
    yield running
    running.stop()


def _auth(token=TOKEN):
    return {"authorization": f"Bearer {token}"}


def _ndjson(*lines):
    return "\n".join(json.dumps(line) for line in lines).encode()


def _header(summary="c"):
    return {"key": "header", "value": {"summary": summary}}


def _file(path, content=b"x"):
    encoded = base64.b64encode(content).decode()
    return {"key": "file", "value": {"path": path, "content": encoded, "encoding": "base64"}}


@pytest.fixture(scope="module")
def repos(hub):
    for name, private in (("open", False), ("secret", True)):
        r = httpx.post(
            f"{hub.url}/api/repos/create",
            json={"name": name, "organization": "team", "private": private},
            headers=_auth(),
        )
        assert r.status_code == 200, r.text
        r = httpx.post(
            f"{hub.url}/api/models/team/{name}/commit/main",
            headers=_auth(),
            content=_ndjson(_header(), _file("a.txt", b"hello")),
        )
        assert r.status_code == 200, r.text
    return hub


def _error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.text)
    assert isinstance(response.json()["error"], str)
    if code:
        assert response.headers["x-error-code"] == code


def test_writes_need_a_valid_token(repos):
    url = repos.url
    new_repo = {"name": "x", "organization": "team"}
    _error(httpx.post(f"{url}/api/repos/create", json=new_repo), 401)
    _error(httpx.post(f"{url}/api/repos/create", json=new_repo, headers=_auth("bad")), 401)
    _error(httpx.post(f"{url}/api/models/team/open/commit/main", content=_ndjson(_header(), _file("b.txt"))), 401)
    _error(httpx.post(f"{url}/api/models/team/open/branch/b1", json={}, headers=_auth("hf_wrong")), 401)
    _error(httpx.get(f"{url}/api/whoami-v2"), 401)
    _error(
        httpx.post(
            f"{url}/team/open.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}]},
        ),
        401,
    )
    assert httpx.get(f"{url}/api/whoami-v2", headers=_auth()).json()["name"]
    # nothing of the rejected writes happened
    files = [f["path"] for f in httpx.get(f"{url}/api/models/team/open/tree/main").json()]
    assert files == [".gitattributes", "a.txt"]
    assert [b["name"] for b in httpx.get(f"{url}/api/models/team/open/refs").json()["branches"]] == ["main"]


def test_private_repos_are_invisible_without_the_token(repos):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    url = repos.url
    for path in (
        "/api/models/team/secret",
        "/api/models/team/secret/tree/main",
        "/api/models/team/secret/refs",
        "/team/secret/resolve/main/a.txt",
        "/api/models/team/secret/revision/main",
    ):
        response = httpx.get(url + path)
        assert response.status_code in (401, 404) and response.headers["x-error-code"] == "RepoNotFound", path
        assert b"hello" not in response.content
    assert httpx.get(f"{url}/team/secret/resolve/main/a.txt", headers=_auth()).content == b"hello"
    assert httpx.get(f"{url}/team/open/resolve/main/a.txt").content == b"hello"  # public: anonymous reads
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=url, token=False).model_info("team/secret")
    assert "team/secret" not in [m.id for m in HfApi(endpoint=url, token=False).list_models()]
    assert HfApi(endpoint=url, token=TOKEN).model_info("team/secret").private is True


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/api/models/team/%2E%2E", None),
        ("GET", "/api/models/%2E%2E/%2E%2E/tree/main", None),
        ("GET", "/team/open/resolve/main/%2E%2E/%2E%2E/etc/passwd", None),
        ("GET", "/team/open/resolve/main/..%2F..%2Frepo.json", None),
        ("GET", "/api/models/team/open/tree/main/..%2F..", None),
        ("POST", "/api/repos/create", {"name": "..", "organization": "team"}),
        ("POST", "/api/repos/create", {"name": "x", "organization": "../../outside"}),
        ("POST", "/api/repos/create", {"name": "a\\b", "organization": "team"}),
        ("POST", "/api/repos/create", {"name": "a\u0000b", "organization": "team"}),
        ("POST", "/api/models/team/open/branch/..%2F..%2Fescape", {}),
        ("POST", "/api/models/team/open/tag/main", {"tag": "../x"}),
    ],
)
def test_escaping_ids_and_paths_are_400(repos, method, path, body):
    response = httpx.request(method, repos.url + path, json=body, headers=_auth())
    _error(response, 400)


@pytest.mark.parametrize(
    "bad_path", ["../evil.txt", "/abs.txt", "a/../../b", "a\\b.txt", "a\u0000b", "./x", "a//b", ".git/config"]
)
def test_commit_paths_that_escape_are_400(repos, bad_path):
    response = httpx.post(
        f"{repos.url}/api/models/team/open/commit/main", headers=_auth(), content=_ndjson(_header(), _file(bad_path))
    )
    _error(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        b"not json\n",
        b'{"key": "header"}\n',
        b'["a"]\n',
        _ndjson(_file("x.txt")),
        _ndjson(_header(), {"key": "file", "value": {"path": "x.txt", "content": "***", "encoding": "base64"}}),
        _ndjson(
            _header(), {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "a" * 64, "size": 3}}
        ),
        _ndjson(_header(), {"key": "unknown", "value": {}}),
        _ndjson(_header(), {"key": "deletedFile", "value": {"path": "missing.txt"}}),
    ],
)
def test_malformed_commits_are_4xx_and_change_nothing(repos, body):
    before = httpx.get(f"{repos.url}/api/models/team/open").json()["sha"]
    response = httpx.post(f"{repos.url}/api/models/team/open/commit/main", headers=_auth(), content=body)
    assert 400 <= response.status_code < 500 and "error" in response.json()
    assert httpx.get(f"{repos.url}/api/models/team/open").json()["sha"] == before


def test_parent_commit_mismatch_is_412(repos):
    stale = {"key": "header", "value": {"summary": "c", "parentCommit": "0" * 40}}
    response = httpx.post(
        f"{repos.url}/api/models/team/open/commit/main", headers=_auth(), content=_ndjson(stale, _file("c.txt"))
    )
    _error(response, 412)


def test_oversize_requests_are_413(repos):
    limits = repos.hub.limits
    before = limits.commit_body
    limits.commit_body = 1000
    try:
        response = httpx.post(
            f"{repos.url}/api/models/team/open/commit/main",
            headers=_auth(),
            content=_ndjson(_header(), _file("big.txt", b"x" * 5000)),
        )
        _error(response, 413)
    finally:
        limits.commit_body = before


def test_lfs_uploads_are_signed_and_verified(repos):
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(
        f"{repos.url}/team/open.git/info/lfs/objects/batch",
        headers=_auth(),
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "hash_algo": "sha256",
            "objects": [{"oid": oid, "size": len(data)}],
        },
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    _error(httpx.put(href.replace("sig=", "sig=0"), content=data), 403)
    _error(httpx.put(href, content=data[:-1] + b"X"), 400)  # content that does not hash to the oid
    assert not list((repos.root / "lfs" / "objects").glob(f"*/*/{oid}"))
    assert httpx.put(href, content=data).status_code == 200
    again = httpx.post(
        f"{repos.url}/team/open.git/info/lfs/objects/batch",
        headers=_auth(),
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
    ).json()
    assert "actions" not in again["objects"][0]  # stored once: the client skips the upload


def test_nothing_is_written_outside_the_root_and_no_token_is_stored(repos):
    garbage = [
        ("GET", "/"),
        ("GET", "/api"),
        ("POST", "/api/models/team/open/commit/main"),
        ("GET", "/api/models/x"),
        ("DELETE", "/api/repos/delete"),
        ("PUT", "/api/lfs-upload/xyz"),
        ("GET", "/api/models/team/open/tree/nob"),
        ("POST", "/api/models/team/open/paths-info/main"),
        ("POST", "/api/models/team/open/preupload/main"),
        ("GET", "/team/open/resolve/main/"),
        ("GET", "/api/models/team/open/commits/%00"),
    ]
    for method, path in garbage:
        for content in (None, b"{", b'{"files": "x"}'):
            response = httpx.request(method, repos.url + path, content=content, headers=_auth())
            assert response.status_code < 500, (method, path, response.status_code, response.text)
            assert "Traceback" not in response.text
    assert sorted(p.name for p in repos.base.iterdir()) == ["root"]
    assert sorted(p.name for p in (repos.root / "repos" / "models").iterdir()) == ["team"]
    for path in repos.root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "path,body,message",
    [
        ("/api/repos/create", {"name": "x\n", "organization": "team"}, "invalid repo id 'team/x\\n'"),
        ("/api/repos/create", {"name": "x", "organization": "datasets"}, "namespace 'datasets' is reserved"),
        ("/api/repos/create", {"name": "x", "type": "models"}, "invalid repo type 'models'"),
        ("/api/models/team/open/branch/" + "0" * 40, {}, "invalid branch or tag name"),
        ("/api/models/team/open/tag/main", {"tag": "refs/tags/x"}, "invalid branch or tag name"),
    ],
)
def test_names_outside_the_grammar_are_400_with_its_message(repos, path, body, message):
    response = httpx.post(repos.url + path, json=body, headers=_auth())
    _error(response, 400)
    assert message in response.json()["error"]
    assert message in response.headers["x-error-message"]


# ---- the smaller holes of issue 14 --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/repos/create", {"name": "x", "organization": "api\n"}),  # a reserved namespace with a newline
        ("/api/repos/create", {"name": "x\n", "organization": "team"}),
        ("/api/models/team/open/branch/x.lock%0A", {}),  # a branch git would refuse, with a newline
        ("/api/models/team/open/tag/main", {"tag": "v1\n"}),
    ],
)
def test_a_trailing_newline_never_passes_a_name_check(repos, path, body):
    _error(httpx.post(repos.url + path, json=body, headers=_auth()), 400)


@pytest.mark.parametrize("token", ["hf_\u00e9t\u00e9".encode(), b"hf_\xff\xfe", "hf_\u2603".encode()])
def test_a_non_ascii_token_is_a_401(repos, token):
    for method, path in (
        ("GET", "/api/whoami-v2"),
        ("POST", "/api/models/team/open/commit/main"),
        ("GET", "/api/models/team/secret"),
        ("GET", "/team/open.git/info/refs?service=git-upload-pack"),
        ("POST", "/team/open.git/info/lfs/objects/batch"),
    ):
        response = httpx.request(method, repos.url + path, headers={"authorization": b"Bearer " + token})
        assert response.status_code == 401, (path, response.status_code, response.text)
    basic = base64.b64encode(b"babyhub:" + token)
    response = httpx.get(f"{repos.url}/team/secret.git/info/refs?service=git-upload-pack", headers={
        "authorization": b"Basic " + basic})  # fmt: skip
    assert response.status_code == 401


@pytest.mark.parametrize(
    "settings",
    [
        {"private": None},
        {"private": 0},
        {"private": ""},
        {"private": "false"},
        {"visibility": "hidden"},
        {"visibility": 1},
        {"private": True, "visibility": "public"},
    ],
)
def test_visibility_is_strictly_typed(repos, settings):
    name = "typed-" + hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:8]
    _error(httpx.post(f"{repos.url}/api/repos/create", json={"name": name, "organization": "team", **settings},
                      headers=_auth()), 400)  # fmt: skip
    assert httpx.get(f"{repos.url}/api/models/team/{name}", headers=_auth()).status_code == 404  # never created
    _error(httpx.put(f"{repos.url}/api/models/team/secret/settings", json=settings, headers=_auth()), 400)
    assert httpx.get(f"{repos.url}/api/models/team/secret", headers=_auth()).json()["private"] is True
    assert httpx.get(f"{repos.url}/api/models/team/secret").status_code == 401  # still hidden from anonymous reads


@pytest.mark.parametrize("parent", [12, ["0" * 40], {"oid": "x"}, True, "not-a-commit"])
def test_a_parent_commit_that_is_not_a_commit_id_is_a_400_not_a_skipped_check(repos, parent):
    before = httpx.get(f"{repos.url}/api/models/team/open").json()["sha"]
    header = {"key": "header", "value": {"summary": "c", "parentCommit": parent}}
    response = httpx.post(
        f"{repos.url}/api/models/team/open/commit/main", headers=_auth(), content=_ndjson(header, _file("p.txt"))
    )
    _error(response, 400)
    assert "parentCommit" in response.json()["error"]
    assert httpx.get(f"{repos.url}/api/models/team/open").json()["sha"] == before


@pytest.mark.parametrize("bad_path", ["a\x7fb.txt", "a\x85b.txt", "a\x9fb", "\x1b[31mred", "a\ud800b"])
def test_del_and_c1_controls_are_refused_in_paths(repos, bad_path):
    response = httpx.post(
        f"{repos.url}/api/models/team/open/commit/main",
        headers=_auth(),
        content=json.dumps({"key": "header", "value": {"summary": "c"}}).encode()
        + b"\n"
        + json.dumps({"key": "file", "value": {"path": bad_path, "content": "eA=="}}).encode(),
    )
    _error(response, 400)


def test_list_repos_never_follows_a_symlinked_namespace_out_of_the_root(repos, tmp_path):
    from hub_tools.local_hub.gitstore import GitStore

    outside = tmp_path / "elsewhere"
    with GitStore(outside) as other:
        other.create_repo("model", "stolen/weights", private=False, sdk=None, author="x")
    link = repos.root / "repos" / "models" / "stolen"
    link.symlink_to(outside / "repos" / "models" / "stolen", target_is_directory=True)
    try:
        listed = [m["id"] for m in httpx.get(f"{repos.url}/api/models", headers=_auth()).json()]
        assert "stolen/weights" not in listed and "team/open" in listed
        _error(httpx.get(f"{repos.url}/api/models/stolen/weights", headers=_auth()), 404)
        assert httpx.get(f"{repos.url}/stolen/weights.git/info/refs?service=git-upload-pack").status_code == 401
    finally:
        link.unlink()


def test_a_full_disk_is_a_507(repos, monkeypatch):
    import errno
    import os

    store = repos.hub.store

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "commit", no_space)
    response = httpx.post(
        f"{repos.url}/api/models/team/open/commit/main", headers=_auth(), content=_ndjson(_header(), _file("f.txt"))
    )
    _error(response, 507)
    monkeypatch.setattr(store, "adopt_lfs_object", no_space)
    data = b"no room for these weights"
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(
        f"{repos.url}/team/open.git/info/lfs/objects/batch",
        headers=_auth(),
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
    ).json()
    put = httpx.put(batch["objects"][0]["actions"]["upload"]["href"], content=data)
    assert put.status_code == 507 and "disk is full" in put.json()["message"]
    assert not list((repos.root / "tmp").iterdir())  # the upload's temp file is gone
