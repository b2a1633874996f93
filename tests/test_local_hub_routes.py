"""The local hub's route table over the raw path (hub_tools/local_hub/app.py), without a server."""

import pytest

from hub_tools.local_hub.app import find_route
from hub_tools.local_hub.errors import HubError
from hub_tools.local_hub.handlers import files, repos, uploads


def _repo(repo_type: str, repo_id: str, revision: str | None = None, path: str | None = None) -> dict:
    """The keyword arguments a repo route gives its handler."""
    params = {"repo_type": repo_type, "repo_id": repo_id, "revision": revision, "path": path}
    return {key: value for key, value in params.items() if value is not None}


REV, CKPT = "ckpt/step-100", "ckpt%2Fstep-100"  # a revision, and how the clients send it: quote(x, safe="")


@pytest.mark.parametrize(
    "method,path,handler,params",
    [
        ("GET", "/api/whoami-v2", repos.whoami, {}),
        ("GET", "/api/datasets", repos.list_repos, {"repo_type": "dataset"}),
        ("GET", "/api/models/me/baby", repos.repo_info, _repo("model", "me/baby")),
        ("GET", "/api/models/api/x", repos.repo_info, _repo("model", "api/x")),  # the grammar answers: a 400
        ("GET", f"/api/spaces/me/chat/revision/{CKPT}", repos.repo_info, _repo("space", "me/chat", REV)),
        ("GET", f"/api/models/me/b/tree/{CKPT}/sub%2Fdir", files.list_tree, _repo("model", "me/b", REV, "sub/dir")),
        ("GET", "/api/models/me/b/tree/main", files.list_tree, _repo("model", "me/b", "main", "")),
        ("POST", "/api/datasets/d/s/commit/refs%2Fheads%2Fv", uploads.commit, _repo("dataset", "d/s", "refs/heads/v")),
        ("DELETE", "/api/models/me/b/branch/ckpt-2", repos.delete_branch, _repo("model", "me/b", "ckpt-2")),
        ("HEAD", f"/me/b/resolve/{CKPT}/sub/w.bin", files.resolve_file, _repo("model", "me/b", REV, "sub/w.bin")),
        ("GET", "/spaces/me/c/resolve/main/app.py", files.resolve_file, _repo("space", "me/c", "main", "app.py")),
    ],
)  # fmt: skip
def test_routes(method, path, handler, params):
    assert find_route(method, path) == (handler, params)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/a/b/c"),  # a repo path no page serves
        ("GET", "/api"),
        ("GET", "/api/models/me"),
        ("POST", "/api/models"),  # a known path, another method
        ("PATCH", "/api/models/me/baby/branch/b"),
        ("GET", "/api/widgets/me/baby"),
        ("GET", "/api/me/baby/resolve/main/x"),  # under /api/ only the API routes
        ("GET", "/me/baby/resolve/main"),  # no file path
        ("GET", "/datasets/resolve/main/x/y"),  # a URL prefix is never a namespace
        ("POST", "/me/baby/info/lfs/objects/batch"),  # no .git
    ],
)
def test_unrouted_paths_are_404(method, path):
    with pytest.raises(HubError) as caught:
        find_route(method, path)
    assert caught.value.status == 404 and caught.value.message.startswith("Not found")
