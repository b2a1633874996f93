"""The whole study in one call, offline: `run_demo`, which `babyhub demo` runs.

    # the made-up sample that ships with babyhub (a first look, about two minutes)
    babyhub demo --quick
    # the real minimal pairs and BLiMP (under 10 minutes on 2 CPU cores)
    babyhub demo --quick --pairs ../shared/data/minpairs/len_pairs_no_overlap_1.csv \\
        --tok-pairs ../shared/data/minpairs/tok_pairs_no_overlap_1.csv --blimp ../shared/data/blimp

Stages, each published to the hub (a local one started in WORKDIR/hub unless HF_ENDPOINT is set):
1. data: the DPO datasets (train, eval, eval-tokens) with their cards;
2. baby: a tiny Llama bootstrapped from the training text, the baseline;
3. synthetic: a synthetic split whose chosen answers come from the baby as a *stand-in* teacher;
4. DPO on real and on synthetic pairs, every checkpoint on its own branch;
5. evaluation of the three models on the dialogue minimal pairs and BLiMP, results written into the cards;
6. the `dialogue_minpairs` metric Space and the chat Space;
then a results table and where everything is.

Every stage is idempotent: its inputs are fingerprinted in WORKDIR/demo-state.json, a stage whose fingerprint
and outputs are unchanged is skipped, and pushes of unchanged content make no commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.hubenv import configure_for_endpoint
from hub_tools.paths import REPO_ROOT
from hub_tools.repos import repo_url

DEFAULT_NAMESPACE = "babyhub"
DEFAULT_PORT = 8787
STATE_FILE = "demo-state.json"
# Where the real data sits in a checkout (../shared/data beside the repository), used for BLiMP by default.
SHARED_BLIMP = REPO_ROOT.parent / "shared" / "data" / "blimp"
MODEL_LABELS = {"baseline": "baseline (bootstrapped baby)", "dpo-real": "DPO real", "dpo-synthetic": "DPO synthetic"}


@dataclass(frozen=True)
class DemoPlan:
    """How much of everything the demo does; `--quick` trades size for time, flags override either."""

    baby_steps: int | None  # None: the size's full epoch budget
    dpo_steps: int | None  # None: the recipe's epochs
    save_steps: int
    synthetic_rows: int | None  # None: every training row
    eval_pairs: int | None  # None: the whole evaluation split
    checkpoint_eval_pairs: int
    blimp_pairs: int | None  # pairs per paradigm; None: all


QUICK = DemoPlan(
    baby_steps=None, dpo_steps=450, save_steps=150, synthetic_rows=2400, eval_pairs=None, checkpoint_eval_pairs=500,
    blimp_pairs=100,
)  # fmt: skip
PLAN_FIELDS = list(DemoPlan.__dataclass_fields__)
FULL = DemoPlan(
    baby_steps=None, dpo_steps=None, save_steps=500, synthetic_rows=None, eval_pairs=None,
    checkpoint_eval_pairs=2000, blimp_pairs=None,
)  # fmt: skip


@dataclass
class Published:
    """One thing the demo put on the hub."""

    what: str
    repo_id: str
    repo_type: str
    url: str
    revisions: list[str] = field(default_factory=list)
    local_path: str | None = None


@dataclass
class DemoResult:
    """What `run_demo` did: the results table rows, what it published, and which stages ran or were skipped."""

    endpoint: str
    workdir: Path
    rows: list[dict]
    published: list[Published]
    ran: list[str]
    skipped: list[str]
    table: str


def make_plan(quick: bool, **overrides: int | None) -> DemoPlan:
    """The `--quick` or full plan with some of its numbers replaced (None keeps the plan's); each at least 1."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    for key, value in overrides.items():
        if value < 1:
            raise BabyhubError(f"the plan's {key} must be at least 1, got {value}.")
    return replace(QUICK if quick else FULL, **overrides)


def resolve_blimp(blimp: Path | None) -> Path | None:
    """The BLiMP folder to score: `blimp`, or ../shared/data/blimp when none is given and it is there (else None)."""
    if blimp is None:
        return SHARED_BLIMP if SHARED_BLIMP.is_dir() else None
    if not Path(blimp).is_dir():
        raise BabyhubError(f"{blimp}: no such folder; give the folder of BLiMP <paradigm>.txt files.")
    return Path(blimp)


# ------------------------------------------------------------------------------------------ the local hub
def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: a port in TIME_WAIT after an earlier run is free to reuse.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_hub(workdir: Path, port: int):
    """Use HF_ENDPOINT if set; else start a local hub with its storage and token file in WORKDIR/hub.

    Returns (endpoint, running hub or None). Must run before huggingface_hub is imported: the clients read
    HF_ENDPOINT and HF_HUB_DISABLE_XET at import time.
    """
    if os.environ.get("HF_ENDPOINT"):
        configure_for_endpoint()
        return os.environ["HF_ENDPOINT"], None
    # The local hub's modules import no huggingface_hub: they may come first.
    from hub_tools.local_hub.server import start_background
    from hub_tools.local_hub.tokens import ensure_token_file, read_first_token

    root = workdir / "hub"
    token_file = ensure_token_file(root)

    # Port 0 when the asked one is taken: the server binds a free port itself (no probe-then-bind race).
    hub = start_background(root, port=port if _port_is_free(port) else 0, token_file=token_file)
    configure_for_endpoint(hub.url)
    # The demo's own cache: files of this hub never mix with a huggingface.co cache under the same repo ids.
    os.environ.setdefault("HF_HOME", str(workdir / "hf_home"))
    os.environ["HF_TOKEN"] = read_first_token(token_file)
    return hub.url, hub


# ------------------------------------------------------------------------------------------------ stages
class Stages:
    """Fingerprinted, idempotent stages: a stage runs when its key changed or its outputs are missing."""

    def __init__(self, workdir: Path):
        self.path = workdir / STATE_FILE
        self.state = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.clock = time.perf_counter()

    def done(self, name: str, key: str) -> dict | None:
        entry = self.state.get(name)
        return entry["outputs"] if entry and entry.get("key") == key else None

    def record(self, name: str, key: str, outputs: dict) -> None:
        self.state[name] = {"key": key, "outputs": outputs, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)  # a crash never leaves a half-written state file

    def announce(self, name: str, skipped: bool, detail: str = "") -> None:
        (self.skipped if skipped else self.ran).append(name)
        mark = "up to date" if skipped else "done"
        now, seconds = time.perf_counter(), time.perf_counter() - self.clock
        self.clock = now
        print(f"[demo] {name}: {mark} in {seconds:.0f} s{f' — {detail}' if detail else ''}", flush=True)


def fingerprint(*parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def head_commit(repo_id: str, repo_type: str = "model", revision: str = "main") -> str | None:
    """The commit a revision points to on the hub, or None if the repo or revision does not exist."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return None


def checkpoint_branches(repo_id: str) -> list[str]:
    """The repo's checkpoint-<step> branches, by step (none if the repo does not exist yet)."""
    from hub_tools.hub.revisions import list_revisions

    return [r.name for r in list_revisions(repo_id, missing_ok=True, main_step=False) if r.name != "main"]


# --------------------------------------------------------------------------------------------- the study
def run_demo(
    workdir: Path,
    *,
    pairs: Path | None = None,
    tok_pairs: Path | None = None,
    blimp: Path | None = None,
    plan: DemoPlan = QUICK,
    namespace: str = DEFAULT_NAMESPACE,
    port: int = DEFAULT_PORT,
) -> DemoResult:
    """Run (or bring up to date) every stage of the study; see the module docstring.

    Args:
        workdir: where everything is built (created): data, models, runs, the local hub, the results.
        pairs: the word-length-matched minimal-pair CSV (default: babyhub's made-up sample).
        tok_pairs: the token-length-matched CSV, evaluated as a second split (optional).
        blimp: the BLiMP folder (default: ../shared/data/blimp when it is there; else BLiMP is skipped).
        plan: how much of everything (`QUICK`, `FULL`, or `make_plan`).
        namespace: the namespace of every repo the demo publishes.
        port: the port of the local hub it starts when HF_ENDPOINT is not set (a free one if taken).

    Returns:
        A `DemoResult`: the results table and its rows, what was published, which stages ran or were skipped.
    """
    workdir = Path(workdir).resolve()
    for path in (pairs, tok_pairs):
        if path is not None and not Path(path).is_file():
            raise BabyhubError(f"{path}: no such file; give a minimal-pair CSV (see ../shared/data/README.md).")
    blimp = resolve_blimp(blimp)
    # Inputs are checked above, before the work folder exists: bad input leaves nothing behind.
    workdir.mkdir(parents=True, exist_ok=True)
    # Start (or reach) the hub before anything imports huggingface_hub.
    endpoint, hub = start_hub(workdir, port)
    print(f"[demo] hub: {endpoint}" + (f" (local, storage in {workdir / 'hub'})" if hub else ""), flush=True)
    stages = Stages(workdir)
    ns = namespace
    published: list[Published] = []
    try:
        data_key, data = stage_data(stages, workdir, ns, endpoint, pairs, tok_pairs, published)
        baby_key, baby_repo, baby_commit = stage_baby(stages, workdir, ns, endpoint, data_key, data, plan, published)
        baby = (baby_repo, baby_commit)
        synthetic = stage_synthetic(stages, workdir, ns, endpoint, baby_key, data, baby, plan, published)
        models, keys = {"baseline": baby_repo}, [baby_key]
        for name, train in (("dpo-real", (data_key, data["train"])), ("dpo-synthetic", synthetic)):
            key, models[name] = stage_train(stages, workdir, ns, endpoint, name, baby, train, data, plan, published)
            keys.append(key)
        rows = stage_evaluate(stages, keys, models, data, blimp, plan)
        stage_spaces(stages, ns, endpoint, models, data, published)
    finally:
        if hub is not None:
            hub.stop()
    table = results_table(rows)
    (workdir / "results.md").write_text(table + "\n", encoding="utf-8")
    (workdir / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return DemoResult(endpoint, workdir, rows, published, stages.ran, stages.skipped, table)


def _publish(stages, stage: str, key: str, folder: Path, repo_id: str, repo_type: str, message: str) -> str | None:
    """Push `folder` unless this stage already published it (its content may since carry pushed results)."""
    from hub_tools.hub.publish import push_folder

    previous = stages.done(stage, key)
    if previous is not None and previous.get(repo_id) and head_commit(repo_id, repo_type) is not None:
        return previous[repo_id]
    result = push_folder(folder, repo_id, repo_type=repo_type, commit_message=message)
    return result.commit_oid or head_commit(repo_id, repo_type)


def stage_data(stages, workdir, ns, endpoint, pairs, tok_pairs, published) -> tuple[str, dict]:
    """Build the preference datasets and publish each with its card."""
    from hub_tools.data.preferences import build_preference_datasets, file_sha256, source_and_train_rows

    source, train_rows = source_and_train_rows(pairs)
    out = workdir / "data"
    key = fingerprint(file_sha256(source), tok_pairs and file_sha256(tok_pairs), train_rows)
    names = {"train": "child-dpo-preferences", "eval": "child-dpo-preferences-eval"}
    if tok_pairs:
        names["eval_tokens"] = "child-dpo-preferences-eval-tokens"
    skipped = stages.done("data", key) is not None and all((out / n / "README.md").is_file() for n in names.values())
    if not skipped:
        if out.exists():
            shutil.rmtree(out)
        report = build_preference_datasets(source, out, tok_pairs_csv=tok_pairs, train_rows=train_rows)
        print(f"[demo] {report.summary()}", flush=True)
    repos, commits = {}, {}
    for split, name in names.items():
        repo_id = repos[split] = f"{ns}/{name}"
        commits[repo_id] = _publish(
            stages, "data", key, out / name, repo_id, "dataset", f"Upload {name} (babyhub demo)"
        )
        published.append(Published(f"dataset ({split})", repo_id, "dataset", repo_url(endpoint, repo_id, "dataset"),
                                   local_path=str(out / name)))  # fmt: skip
    stages.record("data", key, {**commits, "repos": repos})
    stages.announce("data", skipped, ", ".join(repos.values()))
    return key, repos


def stage_baby(stages, workdir, ns, endpoint, data_key, data, plan, published) -> tuple[str, str, str]:
    """Bootstrap the tiny baby from the training split on the hub and publish it: the baseline.

    Returns (stage key, repo id, commit of the uploaded weights)."""
    from hub_tools.training.baby import bootstrap_baby

    repo_id = f"{ns}/baby-llama"
    key = fingerprint(data_key, plan.baby_steps)
    out = workdir / "models" / "baby-llama"
    skipped = stages.done("baby", key) is not None and (out / "config.json").is_file()
    if not skipped:
        if out.exists():
            shutil.rmtree(out)
        local_train = _snapshot(data["train"], "dataset")
        bootstrap_baby(local_train, out, size="tiny", max_steps=plan.baby_steps, dataset_id=data["train"])
    commit = _publish(stages, "baby", key, out, repo_id, "model", "Upload the bootstrapped baby (babyhub demo)")
    published.append(Published("baseline model", repo_id, "model", repo_url(endpoint, repo_id, "model"),
                               ["main"], str(out)))  # fmt: skip
    stages.record("baby", key, {repo_id: commit})
    stages.announce("baby", skipped, f"{repo_id}@{commit[:10]}")
    return key, repo_id, commit


def _snapshot(repo_id: str, repo_type: str, revision: str | None = None) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, repo_type=repo_type, revision=revision)


def stage_synthetic(stages, workdir, ns, endpoint, baby_key, data, baby, plan, published) -> tuple[str, str]:
    """A synthetic split with the baby as a stand-in teacher (no teacher LLM offline), clearly labelled."""
    from hub_tools.cards.dataset_card import mark_stand_in_teacher
    from hub_tools.data.synthesize import synthesize_preferences

    repo_id = f"{ns}/child-dpo-preferences-synthetic"
    key = fingerprint(baby_key, plan.synthetic_rows)
    out = workdir / "data" / "child-dpo-preferences-synthetic"
    skipped = stages.done("synthetic", key) is not None and (out / "README.md").is_file()
    if not skipped:
        repo, commit = baby
        report = synthesize_preferences(
            _snapshot(data["train"], "dataset"), repo, out, revision=commit, limit=plan.synthetic_rows,
            batch_size=64, restart=True,
        )  # fmt: skip
        print(f"[demo] {report.summary()}", flush=True)
        mark_stand_in_teacher(out)
    commit = _publish(stages, "synthetic", key, out, repo_id, "dataset", "Upload the synthetic split (babyhub demo)")
    published.append(Published("dataset (synthetic, stand-in teacher)", repo_id, "dataset",
                               repo_url(endpoint, repo_id, "dataset"), local_path=str(out)))  # fmt: skip
    stages.record("synthetic", key, {repo_id: commit})
    stages.announce("synthetic", skipped, repo_id)
    return key, repo_id


def stage_train(stages, workdir, ns, endpoint, name, baby, train, data, plan, published) -> tuple[str, str]:
    """DPO with recipes/tiny-cpu.yaml through train_dpo.py, every checkpoint pushed to its branch."""
    (baby_repo, baby_commit), (train_key, train_repo) = baby, train
    repo_id = f"{ns}/baby-llama-{name}"
    stage = f"train ({name})"
    key = fingerprint(baby_commit, train_key, plan.dpo_steps, plan.save_steps, plan.checkpoint_eval_pairs)
    out = workdir / "runs" / f"baby-llama-{name}"
    skipped = stages.done(stage, key) is not None and head_commit(repo_id) is not None
    if not skipped:
        import train_dpo  # imports TRL (seconds): only when there is training to do

        argv = [
            "--config", str(REPO_ROOT / "recipes" / "tiny-cpu.yaml"),
            "--model_name_or_path", baby_repo, "--model_revision", baby_commit,
            "--dataset_name", train_repo, "--dataset_revision", head_commit(train_repo, "dataset"),
            "--eval_dataset_name", data["eval"], "--eval_dataset_revision", head_commit(data["eval"], "dataset"),
            "--eval_max_pairs", str(plan.checkpoint_eval_pairs),
            "--output_dir", str(out),
            "--save_steps", str(plan.save_steps),
            "--push_to_hub", "--hub_model_id", repo_id,
        ]  # fmt: skip
        if plan.dpo_steps is not None:
            argv += ["--max_steps", str(plan.dpo_steps)]
        branches = checkpoint_branches(repo_id)
        if branches:  # an interrupted earlier run: continue it from its last published checkpoint
            argv += ["--resume_from_checkpoint", f"{repo_id}@{branches[-1]}"]
            print(f"[demo] {stage}: resuming from {repo_id}@{branches[-1]}", flush=True)
        if train_dpo.run(argv) != 0:
            raise BabyhubError(
                f"{stage}: training finished but some pushes failed (see above); the files are in {out}. "
                "Run `babyhub demo` again to retry them."
            )
    branches = checkpoint_branches(repo_id)
    published.append(Published(f"model ({MODEL_LABELS[name]})", repo_id, "model", repo_url(endpoint, repo_id, "model"),
                               [*branches, "main"], str(out)))  # fmt: skip
    stages.record(stage, key, {"repo_id": repo_id, "branches": branches})
    stages.announce(stage, skipped, f"{repo_id} ({len(branches)} checkpoint branches + main)")
    return key, repo_id


def stage_evaluate(stages, keys, models, data, blimp, plan) -> list[dict]:
    """Score every model on the evaluation split(s) and BLiMP; write the results into each model's card."""
    from hub_tools.branches import Revision
    from hub_tools.evaluation import (
        BlimpResult,
        EvalModel,
        evaluate_revisions,
        head_of_suite,
        push_results,
        read_blimp_suite,
        read_minpairs_data,
    )

    splits = {repo: split for split, repo in data.items() if split != "train"}
    key = fingerprint(keys, str(blimp), plan.eval_pairs, plan.blimp_pairs)
    outputs = stages.done("evaluate", key)
    if outputs is not None:
        stages.announce("evaluate", True, f"{len(outputs['rows'])} models")
        return outputs["rows"]
    datasets = []
    for repo in splits:
        pairs = read_minpairs_data(repo).head(plan.eval_pairs)
        pairs.name = repo  # the table and the cards name the split by its repo
        datasets.append(pairs)
    if blimp is not None:
        datasets.append(head_of_suite(read_blimp_suite(blimp), plan.blimp_pairs))
    rows = []
    for name, repo in models.items():
        commit = head_commit(repo)
        results = evaluate_revisions(EvalModel(repo), [Revision("main", commit=commit)], datasets)
        # The card on the hub gets the numbers as model-index results (nothing else in it changes).
        push_results(results)
        row = {"model": MODEL_LABELS[name], "repo_id": repo, "commit": commit[:10]}
        for result in (r.result for r in results):
            column = "blimp" if isinstance(result, BlimpResult) else f"minpairs_{splits[result.dataset]}"
            row[column], row[f"{column}_n"] = result.accuracy, result.n
        rows.append(row)
        scores = ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        print(f"[demo] evaluated {repo}@{commit[:10]}: {scores}", flush=True)
    stages.record("evaluate", key, {"rows": rows})
    stages.announce("evaluate", False, f"{len(rows)} models")
    return rows


def stage_spaces(stages, ns, endpoint, models, data, published) -> None:
    """Publish the `dialogue_minpairs` metric Space and the chat Space comparing the three models."""
    from hub_tools.spaces import CHAT_SPACE, METRIC_SPACE, push_space

    metric_repo = f"{ns}/dialogue_minpairs"
    metric = push_space(METRIC_SPACE, metric_repo)
    chat_repo = f"{ns}/baby-chat"
    model_list = ",".join(models[name] for name in ("baseline", "dpo-real", "dpo-synthetic"))
    chat = push_space(CHAT_SPACE, chat_repo, models=model_list, examples_dataset=data["eval"])
    for what, repo_id in (("metric Space (evaluate.load)", metric_repo), ("chat Space", chat_repo)):
        published.append(Published(what, repo_id, "space", repo_url(endpoint, repo_id, "space")))
    changed = [r.repo_id for r in (metric, chat) if r.commit_oid]
    stages.announce("spaces", not changed, f"{metric_repo}, {chat_repo}")


# ----------------------------------------------------------------------------------------------- results
def results_table(rows: list[dict]) -> str:
    """Markdown table: model × dialogue min-pairs (word- and token-matched) × BLiMP, as in the write-up."""
    columns = [("model", "model"), ("repo_id", "repo"), ("commit", "commit")]
    if any("minpairs_eval" in r for r in rows):
        columns.append(("minpairs_eval", "dialogue min-pairs (word-matched)"))
    if any("minpairs_eval_tokens" in r for r in rows):
        columns.append(("minpairs_eval_tokens", "dialogue min-pairs (token-matched)"))
    if any("blimp" in r for r in rows):
        columns.append(("blimp", "BLiMP (macro)"))
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else str(row.get(k, "n/a")) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_text(result: DemoResult) -> str:
    """What the demo prints at the end: the table, what it published (URLs and paths), what it skipped."""
    out = ["", "Results (accuracy; dialogue min-pairs: sequence_mean, BLiMP: sequence_sum_bow):", result.table, ""]
    out.append(f"Published on {result.endpoint}:")
    for p in result.published:
        revs = f"  [{', '.join(p.revisions)}]" if p.revisions else ""
        local = f"\n      local: {p.local_path}" if p.local_path else ""
        out.append(f"  - {p.what}: {p.url}{revs}{local}")
    out.append(f"Results: {result.workdir / 'results.md'}, {result.workdir / 'results.json'}")
    if result.skipped and not result.ran:
        out.append("Everything was already done and published: nothing ran.")
    elif result.skipped:
        out.append(f"Up to date and skipped: {', '.join(result.skipped)}")
    return "\n".join(out)
