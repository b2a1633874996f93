"""`sync.check_sync` (`babyhub hub sync --check`): what the destination would refuse of a mirror, asked of the
destination itself, with nothing written there."""

import pytest

from hub_tools.hub.sync import SyncError, check_sync

SRC, ALICE, READER = "hf_check_src", "hf_check_alice_001", "hf_check_reader_01"


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    from huggingface_hub import HfApi

    from hub_tools.local_hub.server import start_background

    base = tmp_path_factory.mktemp("sync-check")
    tokens = base / "dest-tokens"
    tokens.write_text(f"{ALICE} user=alice orgs=lab\n{READER} user=reader orgs=lab role=read\n")
    source = start_background(base / "src", tokens=[SRC])
    dest = start_background(base / "dest", token_file=tokens)
    src_api, dst_api = HfApi(endpoint=source.url, token=SRC), HfApi(endpoint=dest.url, token=ALICE)
    good = b"---\nlicense: apache-2.0\n---\n# ok\n"
    for repo in ("lab/good", "lab/baby", "other/thing", "lab/cards"):
        src_api.create_repo(repo)
        src_api.upload_file(path_or_fileobj=good, path_in_repo="README.md", repo_id=repo)
    dst_api.create_repo("lab/Baby")  # the destination holds it under another spelling

    # Written before the rules existed (straight into the store): a card the Hub refuses, on a checkpoint branch
    # only, and a second spelling of one repo.
    store = source.hub.store
    repo = store.get_repo("model", "lab/cards")
    store.create_ref(repo, "branches", "checkpoint-2", store.resolve(repo, "main"))
    bad = store.put_bytes(b"---\nlicense: my-licence\n---\n# bad\n")
    store.commit(repo, "checkpoint-2", [("add", "README.md", {**bad, "lfs": False})], title="old card", message="",
                 author="babyhub")  # fmt: skip
    store.create_repo("model", "lab/GOOD", private=False, sdk=None, author="babyhub")
    yield source, dest, dst_api
    source.stop()
    dest.stop()


def _commits(api, repo_id):
    return [c.commit_id for c in api.list_repo_commits(repo_id)]


def test_check_names_every_refusal_and_writes_nothing(hubs):
    source, dest, dst_api = hubs
    before = {m.id: _commits(dst_api, m.id) for m in dst_api.list_models()}
    report = check_sync(source.url, dest.url, source_token=SRC, dest_token=ALICE)
    assert sorted(report.repos) == [
        "models/lab/GOOD", "models/lab/baby", "models/lab/cards", "models/lab/good", "models/other/thing"
    ]  # fmt: skip
    problems = "\n".join(report.problems)
    assert not report.ok
    assert (
        "models/lab/baby: the destination has it as lab/Baby (repo ids are case-insensitive there): the mirror would "
        "write into lab/Baby; rename one so that the spellings match"
    ) in problems
    assert (
        "models/other/thing: the destination token (alice, write token) cannot write to the namespace other of "
        f"{dest.url}: use a write token of other or of one of its organisations"
    ) in problems
    assert 'models/lab/cards@checkpoint-2: README.md: Invalid metadata in README.md: "license" must be one' in problems
    assert "models/lab/cards@main" not in problems  # main's card is fine
    assert "the source also has lab/GOOD" in problems or "the source also has lab/good" in problems
    assert {m.id: _commits(dst_api, m.id) for m in dst_api.list_models()} == before  # nothing written


def test_a_clean_mirror_checks_ok_and_a_read_token_does_not(hubs):
    source, dest, _ = hubs
    report = check_sync(source.url, dest.url, repos=["lab/good"], source_token=SRC, dest_token=ALICE)
    assert report.ok and report.repos == ["models/lab/good"]
    reader = check_sync(source.url, dest.url, repos=["lab/good"], source_token=SRC, dest_token=READER)
    assert reader.problems == [
        f"models/lab/good: the destination token (reader, read token) cannot write to the namespace lab of "
        f"{dest.url}: use a write token of lab or of one of its organisations"
    ]
    bad = check_sync(source.url, dest.url, repos=["lab/good"], source_token=SRC, dest_token="hf_unknown_token")
    assert bad.problems == [f"the destination {dest.url} refuses the token (HTTP 401): give a valid write token"]


def test_check_errors_name_the_repo_and_the_hub(hubs):
    source, dest, _ = hubs
    with pytest.raises(SyncError) as missing:
        check_sync(source.url, dest.url, repos=["lab/absent"], source_token=SRC, dest_token=ALICE)
    assert (
        f"checking models/lab/absent from {source.url} to {dest.url}: the source {source.url} answered HTTP 404"
        in (str(missing.value))
    )
    with pytest.raises(SyncError, match="same endpoint"):
        check_sync(source.url, source.url)
