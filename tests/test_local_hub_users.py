"""Users, organisations and tokens on the local hub: a token file maps tokens to users, their organisations and a
role; whoami tells the truth; writes go only to one's own namespace and organisations; private repos are read by
their namespace's members; bare tokens (today's files) stay the hub's write user `babyhub`."""

import time

import httpx
import pytest

ALICE, ALICE_READ, BOB, CAROL, LEGACY = (
    "hf_alice_write_0001",
    "hf_alice_read_00002",
    "hf_bob_write_000003",
    "hf_carol_write_00004",
    "hf_legacy_bare_00005",
)
TOKEN_FILE = f"""# TOKEN [user=NAME] [orgs=ORG,ORG] [role=read|write]
{ALICE}   user=alice orgs=babylm-lab
{ALICE_READ} user=alice role=read
{BOB}     user=bob   orgs=babylm-lab,other-lab   # a comment after a token
{CAROL}   user=carol
{LEGACY}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub_tools.local_hub.server import start_background

    base = tmp_path_factory.mktemp("users")
    token_file = base / "tokens"
    token_file.write_text(TOKEN_FILE)
    running = start_background(base / "root", token_file=token_file)
    running.token_file = token_file
    yield running
    running.stop()


def _api(hub, token):
    from hub_tools.hub.publish import hub_api

    return hub_api(token, hub.url)


def test_whoami_tells_the_truth(hub):
    me = _api(hub, ALICE).whoami()
    assert me["name"] == "alice" and [o["name"] for o in me["orgs"]] == ["babylm-lab"]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert _api(hub, ALICE_READ).whoami()["auth"]["accessToken"]["role"] == "read"
    assert [o["name"] for o in _api(hub, BOB).whoami()["orgs"]] == ["babylm-lab", "other-lab"]
    legacy = _api(hub, LEGACY).whoami()
    assert legacy["name"] == "babyhub" and legacy["auth"]["accessToken"]["role"] == "write"


def test_writes_go_to_ones_own_namespace_and_organisations_only(hub):
    from huggingface_hub.errors import HfHubHTTPError

    alice, bob = _api(hub, ALICE), _api(hub, BOB)
    assert alice.create_repo("baby").repo_id == "alice/baby"  # a namespace-less id lands in one's own namespace
    alice.create_repo("babylm-lab/shared-baby")
    alice.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="babylm-lab/shared-baby")
    bob.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="babylm-lab/shared-baby")  # same org

    with pytest.raises(HfHubHTTPError) as refused:
        bob.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="alice/baby")
    assert refused.value.response.status_code == 403
    assert (
        "model alice/baby: bob cannot write to the namespace alice (you may write to bob and to your organisations: "
        "babylm-lab, other-lab); open a pull request instead"
    ) in str(refused.value)
    with pytest.raises(HfHubHTTPError) as create:
        bob.create_repo("alice/by-bob")
    assert "cannot create model alice/by-bob: bob cannot write to the namespace alice" in str(create.value)
    with pytest.raises(HfHubHTTPError) as branch:
        bob.create_branch("alice/baby", branch="b")
    assert branch.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError):
        bob.delete_repo("alice/baby")
    # What bob may do there: open a pull request.
    pr = bob.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="alice/baby", create_pr=True)
    assert pr.pr_num == 1


def test_a_read_token_cannot_write(hub):
    from huggingface_hub.errors import HfHubHTTPError

    reader = _api(hub, ALICE_READ)
    reader.repo_info("babylm-lab/shared-baby")  # reading is fine
    with pytest.raises(HfHubHTTPError) as refused:
        reader.upload_file(path_or_fileobj=b"r", path_in_repo="r.txt", repo_id="babylm-lab/shared-baby")
    assert "the token of alice is a read token; use a write token" in str(refused.value)
    with pytest.raises(HfHubHTTPError) as create:
        reader.create_repo("alice/read-only")
    assert create.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as pr:
        reader.upload_file(path_or_fileobj=b"r", path_in_repo="r.txt", repo_id="alice/baby", create_pr=True)
    assert pr.value.response.status_code == 403  # a read token proposes nothing either


def test_private_repos_are_read_by_their_namespace_members_only(hub):
    from huggingface_hub.errors import RepositoryNotFoundError

    alice, bob, carol = _api(hub, ALICE), _api(hub, BOB), _api(hub, CAROL)
    alice.create_repo("babylm-lab/secret-baby", private=True)
    alice.upload_file(path_or_fileobj=b"s", path_in_repo="s.txt", repo_id="babylm-lab/secret-baby")
    assert bob.repo_info("babylm-lab/secret-baby").private  # bob is in babylm-lab
    assert "babylm-lab/secret-baby" in {m.id for m in bob.list_models(author="babylm-lab")}
    for outsider in (carol, _api(hub, False)):
        with pytest.raises(RepositoryNotFoundError):
            outsider.repo_info("babylm-lab/secret-baby")
        with pytest.raises(RepositoryNotFoundError):
            outsider.hf_hub_download("babylm-lab/secret-baby", "s.txt")
        assert "babylm-lab/secret-baby" not in {m.id for m in outsider.list_models()}
    legacy = _api(hub, LEGACY)  # the hub's own user reads (and writes) everywhere, as before
    assert legacy.repo_info("babylm-lab/secret-baby").private


def test_bare_tokens_are_the_hubs_write_user(hub):
    legacy = _api(hub, LEGACY)
    assert legacy.create_repo("legacy-baby").repo_id == "babyhub/legacy-baby"
    legacy.upload_file(path_or_fileobj=b"l", path_in_repo="l.txt", repo_id="alice/baby")  # any namespace
    commits = legacy.list_repo_commits("alice/baby")
    assert commits[0].authors == ["babyhub"]


def test_token_file_errors_name_the_line_and_a_broken_edit_keeps_the_old_tokens(hub, tmp_path):
    from hub_tools.local_hub.server import start_background
    from hub_tools.local_hub.users import TokenFileError, Users

    cases = {
        "hf_x user=alice role=admin\n": "line 1: role must be read or write, got 'admin'",
        "hf_x user=al/ice\n": "line 1: invalid user name segment 'al/ice'",
        "hf_x user=api\n": "line 1: user name 'api' is reserved (a URL prefix of the Hub); choose another",
        "hf_x orgs=lab\n": "line 1: orgs= needs user= (a bare token is the hub's user babyhub)",
        "hf_x user=a colour=blue\n": "line 1: unexpected 'colour=blue'",
        "hf_x user=a\nhf_x user=b\n": "line 2: this token is already on an earlier line",
        "hf_x user=lab\nhf_y user=a orgs=lab\n": "'lab' is both a user and an organisation",
    }
    for text, message in cases.items():
        path = tmp_path / "tokens"
        path.write_text(text)
        with pytest.raises(TokenFileError) as caught:
            Users(token_file=path)
        assert message in str(caught.value), str(caught.value)
        assert str(path) in str(caught.value)
    with pytest.raises(TokenFileError):  # the server does not start on a broken file
        start_background(tmp_path / "r", token_file=path)

    # While it runs: a broken edit is logged and the tokens read before stay in force; a good edit applies.
    hub.token_file.write_text(TOKEN_FILE + "hf_broken user=a role=root\n")
    time.sleep(0.01)
    assert httpx.get(f"{hub.url}/api/whoami-v2", headers={"authorization": f"Bearer {ALICE}"}).status_code == 200
    hub.token_file.write_text(TOKEN_FILE.replace(f"{CAROL}   user=carol\n", ""))
    time.sleep(0.01)
    r = httpx.get(f"{hub.url}/api/whoami-v2", headers={"authorization": f"Bearer {CAROL}"})
    assert r.status_code == 401 and r.json()["error"] == "Invalid credentials in Authorization header"
    hub.token_file.write_text(TOKEN_FILE)
