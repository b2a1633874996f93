"""The local hub with the real clients: datasets, transformers, evaluate and huggingface_hub."""

import json
import textwrap

import pytest

from hub_tools.hub.publish import push_folder
from tests.conftest import HUB_URL


@pytest.fixture
def api(local_hub):
    from huggingface_hub import HfApi

    return HfApi()


def test_datasetdict_push_to_hub_and_load_dataset(local_hub):
    import datasets
    from huggingface_hub import DatasetCard

    repo = "babyhub/hub-dataset-roundtrip"
    train = {"prompt": [f"*MOT: p{i}" for i in range(30)], "chosen": ["*CHI: a"] * 30, "rejected": ["*CHI: b"] * 30}
    test = {"prompt": ["*MOT: q"], "chosen": ["*CHI: c"], "rejected": ["*CHI: d"]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(train), "test": datasets.Dataset.from_dict(test)})
    datasets_api_create = __import__("huggingface_hub").HfApi().create_repo
    datasets_api_create(repo, repo_type="dataset")
    DatasetCard("---\nlicense: cc-by-4.0\n---\n# Child DPO preferences\n").push_to_hub(repo)
    dd.push_to_hub(repo)  # reads the card back, merges its dataset_info into it, commits with parentCommit
    loaded = datasets.load_dataset(repo, download_mode="force_redownload")
    assert set(loaded) == {"train", "test"}
    assert loaded["train"]["prompt"] == train["prompt"] and loaded["test"]["rejected"] == ["*CHI: d"]
    card = DatasetCard.load(repo)
    assert card.data.license == "cc-by-4.0" and "Child DPO preferences" in card.text
    assert "dataset_info" in card.data.to_dict()


def _tiny_llama(seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def test_model_lfs_commit_branches_and_from_pretrained_by_revision(api, tmp_path):
    import torch
    from huggingface_hub import CommitOperationAdd
    from transformers import AutoModelForCausalLM

    repo = "babyhub/hub-baby-checkpoints"
    api.create_repo(repo)
    base = _tiny_llama(0)
    base.save_pretrained(tmp_path / "base")
    api.create_commit(
        repo, [CommitOperationAdd(p.name, p) for p in (tmp_path / "base").iterdir()], commit_message="baby"
    )
    weights = next(f for f in api.list_repo_tree(repo) if f.path == "model.safetensors")
    assert weights.lfs is not None and weights.lfs.size == weights.size  # stored as LFS, not inline
    models = {}
    for step in (2000, 4000):
        models[step] = _tiny_llama(step)
        models[step].save_pretrained(tmp_path / f"checkpoint-{step}")
        push_folder(
            tmp_path / f"checkpoint-{step}", repo, revision=f"checkpoint-{step}", commit_message=f"checkpoint {step}"
        )
    refs = api.list_repo_refs(repo)
    assert {b.name for b in refs.branches} == {"main", "checkpoint-2000", "checkpoint-4000"}
    for step, model in models.items():
        loaded = AutoModelForCausalLM.from_pretrained(repo, revision=f"checkpoint-{step}")
        for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
        commits = api.list_repo_commits(repo, revision=f"checkpoint-{step}")
        assert [c.title for c in commits] == [f"checkpoint {step}", "initial commit"]
    main = AutoModelForCausalLM.from_pretrained(repo)
    assert torch.equal(main.lm_head.weight, base.lm_head.weight)
    assert [c.title for c in api.list_repo_commits(repo)] == ["baby", "initial commit"]


def test_snapshot_download_of_a_space_and_tags(api, tmp_path):
    from huggingface_hub import snapshot_download

    space = tmp_path / "space"
    (space / "assets").mkdir(parents=True)
    (space / "README.md").write_text("---\ntitle: Chat\nsdk: gradio\napp_file: app.py\n---\n# Chat\n")
    (space / "app.py").write_text("import gradio\n")
    (space / "assets" / "logo.bin").write_bytes(bytes(range(256)) * 10)
    push_folder(space, "babyhub/hub-space", repo_type="space")
    api.create_tag("babyhub/hub-space", tag="v1", repo_type="space")
    (space / "app.py").write_text("import gradio as gr\n")
    push_folder(space, "babyhub/hub-space", repo_type="space")
    latest = snapshot_download("babyhub/hub-space", repo_type="space", local_dir=tmp_path / "latest")
    tagged = snapshot_download("babyhub/hub-space", repo_type="space", revision="v1", local_dir=tmp_path / "v1")
    for name in ("README.md", "assets/logo.bin"):
        assert (tmp_path / "latest" / name).read_bytes() == (space / name).read_bytes()
    assert (tmp_path / "latest" / "app.py").read_text() == "import gradio as gr\n"
    assert (tmp_path / "v1" / "app.py").read_text() == "import gradio\n"
    assert str(latest).endswith("latest") and str(tagged).endswith("v1")
    assert [t.name for t in api.list_repo_refs("babyhub/hub-space", repo_type="space").tags] == ["v1"]


METRIC = textwrap.dedent('''
    """Share of predictions equal to their reference."""
    import datasets
    import evaluate


    class ExactShare(evaluate.Metric):
        def _info(self):
            return evaluate.MetricInfo(
                description="exact share", citation="", inputs_description="",
                features=datasets.Features({"predictions": datasets.Value("int32"),
                                            "references": datasets.Value("int32")}),
            )

        def _compute(self, predictions, references):
            return {"exact_share": sum(p == r for p, r in zip(predictions, references)) / len(references)}
''')


def test_evaluate_load_a_metric_from_a_space(tmp_path):
    import evaluate

    folder = tmp_path / "exact_share"
    folder.mkdir()
    (folder / "exact_share.py").write_text(METRIC)
    (folder / "README.md").write_text(
        "---\ntitle: exact_share\nsdk: gradio\napp_file: app.py\ntags:\n- evaluate\n- metric\n---\n# exact_share\n"
    )
    (folder / "app.py").write_text("print('space')\n")
    push_folder(folder, "babyhub/exact_share", repo_type="space")
    metric = evaluate.load("babyhub/exact_share")
    assert metric.compute(predictions=[1, 2, 3, 4], references=[1, 2, 0, 0]) == {"exact_share": 0.5}


def test_restart_keeps_everything(tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    from hub_tools.local_hub.server import start_background

    token_file = tmp_path / "tokens"
    token_file.write_text("# one token per line\nhf_restart_token\n")
    hub = start_background(tmp_path / "root", token_file=token_file)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\1" * 5000)
    (folder / "config.json").write_text("{}")
    pushed = push_folder(
        folder, "babyhub/restart", revision="checkpoint-2000", token="hf_restart_token", endpoint=hub.url
    )
    HfApi(endpoint=hub.url, token="hf_restart_token").create_tag(
        "babyhub/restart", tag="t1", revision="checkpoint-2000"
    )
    hub.stop()
    hub = start_background(tmp_path / "root", token_file=token_file)  # another port, same root
    try:
        api = HfApi(endpoint=hub.url, token="hf_restart_token")
        refs = api.list_repo_refs("babyhub/restart")
        assert {b.name: b.target_commit for b in refs.branches}["checkpoint-2000"] == pushed.commit_oid
        assert refs.tags[0].target_commit == pushed.commit_oid
        path = hf_hub_download(
            "babyhub/restart",
            "model.safetensors",
            revision="t1",
            endpoint=hub.url,
            token="hf_restart_token",
            cache_dir=tmp_path / "cache",
        )
        assert open(path, "rb").read() == b"\1" * 5000
        assert len(api.list_repo_commits("babyhub/restart", revision="checkpoint-2000")) == 2
    finally:
        hub.stop()


def test_ranges_and_headers(local_hub, tmp_path):
    import httpx

    folder = tmp_path / "m"
    folder.mkdir()
    data = bytes(range(256)) * 40
    (folder / "weights.bin").write_bytes(data)
    (folder / "notes.txt").write_text("hello")
    sha = push_folder(folder, "babyhub/hub-ranges").commit_oid
    url = f"{HUB_URL}/babyhub/hub-ranges/resolve/main/weights.bin"
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["x-repo-commit"] == sha
    assert int(head.headers["content-length"]) == len(data) == int(head.headers["x-linked-size"])
    assert head.headers["etag"].strip('"') == __import__("hashlib").sha256(data).hexdigest()
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert httpx.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert httpx.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    missing = httpx.head(f"{HUB_URL}/babyhub/hub-ranges/resolve/main/nope.txt")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == sha
    no_rev = httpx.head(f"{HUB_URL}/babyhub/hub-ranges/resolve/nobranch/notes.txt")
    assert no_rev.status_code == 404 and no_rev.headers["x-error-code"] == "RevisionNotFound"
    assert not any(k.lower().startswith("x-xet") for k in head.headers)


def test_delete_repo_and_paths_info(api, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    api.create_repo("babyhub/hub-delete", repo_type="dataset", private=True)
    api.upload_file(
        path_or_fileobj=b"a,b\n", path_in_repo="data/x.csv", repo_id="babyhub/hub-delete", repo_type="dataset"
    )
    info = api.get_paths_info("babyhub/hub-delete", ["data", "data/x.csv", "missing"], repo_type="dataset")
    assert [(type(i).__name__, i.path) for i in info] == [("RepoFolder", "data"), ("RepoFile", "data/x.csv")]
    assert api.dataset_info("babyhub/hub-delete").private is True
    api.delete_repo("babyhub/hub-delete", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("babyhub/hub-delete")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo("babyhub/hub-delete", repo_type="dataset")


def test_twenty_concurrent_clients(api, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import hf_hub_download

    from hub_tools.hub.publish import push_files

    def push(i: int) -> str:
        return push_files(
            {f"file-{i}.json": json.dumps({"i": i}).encode()}, "babyhub/hub-concurrent", commit_message=f"file {i}"
        ).commit_oid

    api.create_repo("babyhub/hub-concurrent")
    with ThreadPoolExecutor(20) as pool:
        oids = list(pool.map(push, range(20)))
        reads = list(
            pool.map(
                lambda i: hf_hub_download("babyhub/hub-concurrent", ".gitattributes", cache_dir=tmp_path / f"c{i}"),
                range(20),
            )
        )
    assert len(set(oids)) == 20 and all(reads)
    files = api.list_repo_files("babyhub/hub-concurrent")
    assert {f"file-{i}.json" for i in range(20)} <= set(files)
    assert len(api.list_repo_commits("babyhub/hub-concurrent")) == 21  # no lost or doubled commit


def test_tree_pagination_and_folder_deletion(api, monkeypatch):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    from hub_tools.local_hub.handlers import files

    repo = "babyhub/hub-pages"
    api.create_repo(repo)
    adds = [CommitOperationAdd(f"runs/r{i}/log.txt", f"run {i}".encode()) for i in range(7)]
    api.create_commit(repo, adds + [CommitOperationAdd("keep.txt", b"k")], commit_message="runs")
    monkeypatch.setattr(files, "TREE_PAGE", 3)  # the client must follow `Link: <...>; rel="next"`
    paths = [f.path for f in api.list_repo_tree(repo, recursive=True)]
    assert len(paths) == len(set(paths)) == 1 + 1 + 1 + 7 * 2  # .gitattributes, keep.txt, runs/, 7 dirs + 7 files
    api.create_commit(repo, [CommitOperationDelete("runs/")], commit_message="drop runs")
    assert sorted(api.list_repo_files(repo)) == [".gitattributes", "keep.txt"]
    assert [c.title for c in api.list_repo_commits(repo)] == ["drop runs", "runs", "initial commit"]


def test_a_revision_with_a_slash_through_every_route(api, tmp_path):
    """Revisions arrive `quote(x, safe="")`-encoded: the raw-path routes must keep `ckpt/step-100` whole."""
    from huggingface_hub import hf_hub_download

    repo, branch = "babyhub/hub-slash-revision", "ckpt/step-100"
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "notes.txt").write_text("step 100\n")
    (folder / "model.safetensors").write_bytes(b"\2" * 3000)
    pushed = push_folder(folder, repo, revision=branch, commit_message="step 100")
    assert pushed.url.endswith("/babyhub/hub-slash-revision/tree/ckpt%2Fstep-100")
    assert api.model_info(repo, revision=branch).sha == pushed.commit_oid
    assert [f.path for f in api.list_repo_tree(repo, revision=branch, path_in_repo="sub")] == ["sub/notes.txt"]
    assert [c.title for c in api.list_repo_commits(repo, revision=branch)] == ["step 100", "initial commit"]
    assert [i.path for i in api.get_paths_info(repo, ["sub/notes.txt"], revision=branch)] == ["sub/notes.txt"]
    path = hf_hub_download(repo, "sub/notes.txt", revision=branch, cache_dir=tmp_path / "cache")
    assert open(path).read() == "step 100\n"
    api.create_tag(repo, tag="v/100", revision=branch)
    assert {t.name: t.target_commit for t in api.list_repo_refs(repo).tags} == {"v/100": pushed.commit_oid}
    api.delete_tag(repo, tag="v/100")
    api.delete_branch(repo, branch=branch)
    assert [b.name for b in api.list_repo_refs(repo).branches] == ["main"]


def test_the_fault_harness_is_there_only_when_switched_on(tmp_path):
    import subprocess
    import sys

    from hub_tools.local_hub.faults import FaultMiddleware
    from hub_tools.local_hub.server import start_background

    # Importing the server installs nothing: uvicorn's error log keeps its filters as they were.
    code = (
        "import logging; import hub_tools.local_hub.server, hub_tools.local_hub.faults; "
        "print(len(logging.getLogger('uvicorn.error').filters))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "0\n"
    hub = start_background(tmp_path / "root")
    try:
        assert hub.hub.faults is None and not isinstance(hub.hub.build_app(), FaultMiddleware)
        with pytest.raises(RuntimeError, match="start it with faults=True"):
            hub.faults.add("commit", "503")
    finally:
        hub.stop()
    hub = start_background(tmp_path / "root", faults=True)
    try:
        assert isinstance(hub.hub.build_app(), FaultMiddleware)
        hub.faults.add("any", "503")
        response = __import__("httpx").get(f"{hub.url}/api/models")
        assert response.status_code == 503 and hub.faults.fired == [("other", "503")]
        with pytest.raises(ValueError, match="unknown fault action 'boom'"):
            hub.faults.add("commit", "boom")
    finally:
        hub.stop()
