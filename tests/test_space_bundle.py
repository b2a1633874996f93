"""Space bundles: the scorer reaches a Space through a link or an import, never a hand copy."""

import pytest

from hub_tools.errors import BabyhubError
from hub_tools.paths import REPO_ROOT, SPACES
from hub_tools.spaces import push_space
from hub_tools.spaces.bundle import build_space_bundle

SCORING = REPO_ROOT / "hub_tools" / "scoring.py"
README = "---\ntitle: t\nsdk: gradio\napp_file: app.py\n---\n# t\n"


def make_space(root, app_source, **files):
    space = root / "space"
    space.mkdir(parents=True)
    (space / "README.md").write_text(README)
    (space / "app.py").write_text(app_source)
    for name, text in files.items():
        (space / name).write_text(text)
    return space


def test_metric_space_bundle_holds_real_copies_of_the_linked_modules(tmp_path):
    metric_dir = SPACES / "dialogue_minpairs"
    assert (metric_dir / "scoring.py").is_symlink()  # the checkout links, so evaluate.load(path) works there
    bundle = build_space_bundle(metric_dir, tmp_path / "bundle")
    names = sorted(p.name for p in bundle.iterdir())
    assert names == [
        "README.md", "app.py", "dialogue.py", "dialogue_minpairs.py", "requirements.txt", "scoring.py", "stats.py"
    ]  # fmt: skip
    assert not any(p.is_symlink() for p in bundle.iterdir())
    assert (bundle / "scoring.py").read_bytes() == SCORING.read_bytes()
    assert (bundle / "stats.py").read_bytes() == (REPO_ROOT / "hub_tools" / "stats.py").read_bytes()


def test_imported_modules_are_placed_beside_the_space(tmp_path):
    # A bare-name import with the package import as first choice, as a Space that also runs from a checkout writes.
    app = "try:\n    from hub_tools.scoring import Scorer\nexcept ImportError:\n    from scoring import Scorer\n"
    helper = "import dialogue\n"
    space = make_space(tmp_path, app, **{"helper.py": helper})
    (space / "__pycache__").mkdir()
    (space / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    bundle = build_space_bundle(space, tmp_path / "out")
    assert sorted(p.name for p in bundle.iterdir()) == [
        "README.md",
        "app.py",
        "dialogue.py",
        "helper.py",
        "scoring.py",
    ]
    assert (bundle / "scoring.py").read_bytes() == SCORING.read_bytes()
    # A rebuild replaces the previous bundle.
    (space / "helper.py").unlink()
    assert not (build_space_bundle(space, tmp_path / "out") / "dialogue.py").exists()


def test_modules_that_need_babyhub_are_refused_and_nothing_is_left(tmp_path):
    space = make_space(tmp_path, "import repos\n")  # hub_tools/repos.py imports hub_tools
    out = tmp_path / "out"
    with pytest.raises(BabyhubError, match=r"hub_tools/repos.py imports hub_tools"):
        build_space_bundle(space, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["space"]


def test_bad_spaces_and_links_are_refused(tmp_path):
    with pytest.raises(BabyhubError, match="has no README.md"):
        build_space_bundle(tmp_path, tmp_path / "out")
    space = make_space(tmp_path, "print('hi')\n")
    (space / "outside.txt").symlink_to("/etc/hostname")
    with pytest.raises(BabyhubError, match="links outside the repository"):
        build_space_bundle(space, tmp_path / "out")
    (space / "outside.txt").unlink()
    (space / "broken.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(BabyhubError, match="broken link"):
        build_space_bundle(space, tmp_path / "out")
    (space / "broken.py").unlink()
    with pytest.raises(BabyhubError, match="outside it"):
        build_space_bundle(space, space / "bundle")


def test_push_space_creates_a_gradio_space_and_repushes_nothing_when_unchanged(local_hub, tmp_path):
    from huggingface_hub import HfApi

    space = make_space(tmp_path, "from scoring import Scorer\n")
    first = push_space(space, "babyhub/space-bundle-test")
    assert first.repo_type == "space" and first.commit_oid
    api = HfApi()
    assert api.space_info("babyhub/space-bundle-test").sdk == "gradio"
    assert {"README.md", "app.py", "scoring.py"} <= set(
        api.list_repo_files("babyhub/space-bundle-test", repo_type="space")
    )
    assert push_space(space, "babyhub/space-bundle-test").commit_oid is None
