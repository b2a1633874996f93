"""The Hub vocabulary (hub_tools/repos.py): one grammar for the client and the local hub."""

import subprocess

import pytest

from hub_tools import repos
from hub_tools.errors import BabyhubError
from hub_tools.repos import InvalidName, RepoRef


@pytest.mark.parametrize(
    "repo_id", ["me/baby-dpo", "BabyLM/child_dpo.v2", "a/b", "x1/" + "n" * 96, "bbunzeck/another-llama"]
)
def test_valid_repo_ids(repo_id):
    assert repos.check_repo_id(repo_id) == repo_id and repos.is_repo_id(repo_id)


@pytest.mark.parametrize(
    "repo_id",
    [
        "me/baby\n",  # `$` would let a trailing newline through; `\Z` does not
        "me\n/baby",
        "no-namespace",
        "a/b/c",
        "/baby",
        "me/",
        "me/..",
        "me/a..b",
        "me/.hidden",
        "me/name.",
        "me/name.git",
        "me/" + "n" * 97,
        "me/a b",
        "me/a\\b",
        "me/a\0b",
        "../x",
        "",
        None,
    ],
)
def test_invalid_repo_ids_are_refused_naming_the_id(repo_id):
    with pytest.raises(InvalidName) as caught:
        repos.check_repo_id(repo_id)
    assert f"invalid repo id {repo_id!r}" in str(caught.value)
    assert not repos.is_repo_id(repo_id)
    assert isinstance(caught.value, BabyhubError) and isinstance(caught.value, ValueError)


def test_one_segment():
    assert repos.check_name("baby-dpo") == "baby-dpo"
    with pytest.raises(InvalidName, match="invalid namespace segment '..'"):
        repos.check_name("..", "namespace")


def test_an_id_without_namespace_shows_the_example():
    with pytest.raises(InvalidName, match=r"must be NAMESPACE/NAME, e\.g\. me/chat"):
        repos.check_repo_id("chat", example="me/chat")


@pytest.mark.parametrize("namespace", sorted(repos.RESERVED_NAMESPACES) + ["API", "Datasets"])
def test_reserved_namespaces(namespace):
    with pytest.raises(InvalidName, match=f"namespace {namespace!r} is reserved"):
        repos.check_repo_id(f"{namespace}/baby")


@pytest.mark.parametrize(
    "revision",
    ["main", "checkpoint-2000", "ckpt/step-100", "v1.0", "_x", "a" * 40, "refs/pr/1", "refs/pr/42"]
    + ["refs/heads/main", "refs/tags/v1"],
)
def test_valid_revisions(revision):
    assert repos.check_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["", "main\n", "a..b", "a//b", "a/", "a.lock", "a.", "/a", "-a", "refs/pr/0", "refs/pr/x", "refs/other/x"]
    + ["refs/heads/", "refs/heads/a..b", "a b", None],
)
def test_invalid_revisions(revision):
    with pytest.raises(InvalidName, match="invalid revision"):
        repos.check_revision(revision)


def test_ref_names_refuse_commit_ids_and_full_refs():
    assert repos.check_ref_name("checkpoint-2000") == "checkpoint-2000"
    for name in ("0" * 40, "refs/pr/1", "refs/heads/main", "x\n", "../escape"):
        with pytest.raises(InvalidName, match="invalid branch or tag name"):
            repos.check_ref_name(name)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("me/baby", RepoRef("me/baby")),
        ("me/baby@checkpoint-2000", RepoRef("me/baby", "checkpoint-2000")),
        ("me/baby@refs/pr/3", RepoRef("me/baby", "refs/pr/3")),
        ("models/me/baby", RepoRef("me/baby", None, "model")),
        ("datasets/me/prefs", RepoRef("me/prefs", None, "dataset")),
        ("spaces/me/chat@main", RepoRef("me/chat", "main", "space")),
        ("datasets/me/prefs/", RepoRef("me/prefs", None, "dataset")),
    ],
)
def test_parse_repo_ref(text, expected):
    assert repos.parse_repo_ref(text) == expected


def test_parse_repo_ref_default_type_and_spelling():
    ref = repos.parse_repo_ref("me/prefs@v1", repo_type="dataset")
    assert ref == RepoRef("me/prefs", "v1", "dataset")
    assert str(ref) == "datasets/me/prefs@v1" and ref.typed_id == "datasets/me/prefs"
    assert repos.parse_repo_ref(str(ref)) == ref  # what it prints, it reads back
    assert RepoRef("me/baby").typed_id == "models/me/baby" and str(RepoRef("me/baby")) == "me/baby"


@pytest.mark.parametrize(
    "text,message",
    [
        ("a/b/c/d", "expected NS/NAME"),
        ("widgets/me/x", "expected NS/NAME"),
        ("me/baby@", "invalid revision"),
        ("me/baby@a..b", "invalid revision"),
        ("api/baby", "is reserved"),
        ("me/baby\n", r"the name 'baby\\n' must use letters"),
    ],
)
def test_parse_repo_ref_errors(text, message):
    with pytest.raises(InvalidName, match=message):
        repos.parse_repo_ref(text)


def test_repo_types():
    assert [repos.check_repo_type(t) for t in repos.REPO_TYPES] == ["model", "dataset", "space"]
    with pytest.raises(InvalidName, match="invalid repo type 'models'"):
        repos.check_repo_type("models")
    assert set(repos.REPO_TYPE_PLURALS.values()) == set(repos.REPO_TYPES) == set(repos.URL_PREFIXES)


def test_urls():
    assert repos.repo_url("http://127.0.0.1:8787/", "me/baby") == "http://127.0.0.1:8787/me/baby"
    assert repos.repo_url("https://huggingface.co", "me/p", "dataset") == "https://huggingface.co/datasets/me/p"
    assert repos.repo_url("https://huggingface.co", "me/c", "space") == "https://huggingface.co/spaces/me/c"
    assert (
        repos.revision_url("https://huggingface.co", "me/baby", revision="ckpt/step-100")
        == "https://huggingface.co/me/baby/tree/ckpt%2Fstep-100"
    )


@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(range(256)) * 50])
def test_git_blob_ids_match_git(tmp_path, data):
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert repos.git_blob_sha1(data) == expected.stdout.strip()
    hasher = repos.git_blob_hasher(len(data))
    for start in range(0, len(data), 1000):  # fed in chunks, as a streamed upload is
        hasher.update(data[start : start + 1000])
    assert hasher.hexdigest() == expected.stdout.strip()
