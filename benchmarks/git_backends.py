"""dulwich against pygit2 for the local hub's git store, side by side in one run (the git CLI as a yardstick).

    python benchmarks/git_backends.py                 # 5,000 files, then a commit of 10,000 more
    python benchmarks/git_backends.py --base 500 --add 1000 --json   # a short smoke run
    python benchmarks/git_backends.py --stores        # gitstore.GitStore through the calls the server makes

The workload is what the hub does to a big dataset repo (issue 14), each step in a fresh subprocess per backend so
that peak RSS is that backend's own:

- **commit**: 10,000 small new files (blobs, the trees they touch, a commit, a ref) onto a tree of 5,000, with every
  object durable (one fsynced pack for dulwich; fsynced loose objects for pygit2, the only way it writes);
- **tree**: list the 15,000 files of that commit recursively with each file's size (a cold store, then warm);
- **resolve**: 2,000 path -> blob lookups in it;
- **pack**: build the pack a clone downloads (every object reachable from the branch head);
- **rss**: the subprocess's peak resident memory.

With `--stores`, the same workload goes through the store's own interface (what the server calls: `commit`,
`tree_view(...).list(recursive=True)` for a listing, `tree_view(...).file(path)` for each `/resolve/`), plus the disk
that 50 one-file commits add. (The JSON store it was first compared with is gone since issue 14's swap; its figures
are in benchmarks/README.md.)

The git CLI does the same commit (`git add` + `git commit` in a work tree) and pack (`git pack-objects`) for scale.
Figures are only comparable inside one run: other processes on the machine skew them.
"""

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BACKENDS = ("dulwich", "pygit2", "git-cli")
STORES = ("git-store",)  # gitstore.GitStore, through the server's calls


def make_files(
    start: int, count: int, seed: int, *, folder: Callable[[int], str] = lambda i: f"d{i % 100:02d}"
) -> dict[str, bytes]:
    """`count` small text files, file i in `data/{folder(i)}/`; by default spread over 100 folders (as a sharded
    dataset or a tokenizer dump would be)."""
    rng = random.Random(seed)
    words = [b"the", b"baby", b"mummy", b"ball", b"look", b"a", b"doggy", b"where", b"is", b"it"]
    return {
        f"data/{folder(i)}/file{i:06d}.txt": b" ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        for i in range(start, start + count)
    }


# ---- dulwich -------------------------------------------------------------------------------------------------------
def timed(fn, *args):
    """`fn(*args)` and the seconds it took."""
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def figures(listing: list, commit_s, tree_cold_s, tree_warm_s, resolve_s, pack_s, pack_mb) -> dict:
    """One backend's figures under the keys the table prints (None: the backend does not measure it)."""
    return {
        "files": len(listing),
        "commit_s": commit_s,
        "tree_cold_s": tree_cold_s,
        "tree_warm_s": tree_warm_s,
        "resolve_s": resolve_s,
        "pack_s": pack_s,
        "pack_mb": pack_mb,
    }


def _dulwich_commit(repo, parent: bytes | None, files: dict[str, bytes], message: bytes) -> bytes:
    """Blobs, touched trees and the commit written as ONE pack (fsynced), then the ref moved."""
    import stat

    from dulwich.objects import Blob, Commit, Tree

    store = repo.object_store
    new_objects = []
    changes: dict[tuple[str, ...], dict[bytes, tuple[int, bytes]]] = {}
    for path, data in files.items():
        blob = Blob.from_string(data)
        new_objects.append(blob)
        *dirs, name = path.split("/")
        changes.setdefault(tuple(dirs), {})[name.encode()] = (0o100644, blob.id)
    # every ancestor of a touched folder is touched too
    for dirs in list(changes):
        for depth in range(len(dirs)):
            changes.setdefault(dirs[:depth], {})
    root_tree = store[store[parent].tree] if parent else Tree()

    def old_tree(dirs):
        tree = root_tree
        for name in dirs:
            try:
                _, sha = tree[name.encode()]
            except KeyError:
                return Tree()
            tree = store[sha]
        return tree

    built: dict[tuple[str, ...], bytes] = {}
    for dirs in sorted(changes, key=len, reverse=True):
        tree = old_tree(dirs)
        tree = Tree.from_raw_string(Tree.type_num, tree.as_raw_string()) if len(tree) else Tree()
        for name, (mode, sha) in changes[dirs].items():
            tree.add(name, mode, sha)
        for child, sha in built.items():
            if len(child) == len(dirs) + 1 and child[:-1] == dirs:
                tree.add(child[-1].encode(), stat.S_IFDIR, sha)
        new_objects.append(tree)
        built[dirs] = tree.id
    commit = Commit()
    commit.tree = built[()]
    commit.parents = [parent] if parent else []
    commit.author = commit.committer = b"bench <bench@localhost>"
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message
    new_objects.append(commit)
    store.add_objects([(obj, None) for obj in new_objects])
    repo.refs.set_if_equals(b"refs/heads/main", parent, commit.id)
    return commit.id


def run_dulwich(work: Path, base: dict, add: dict, lookups: list[str]) -> dict:
    from dulwich.objects import Tree
    from dulwich.pack import write_pack_data
    from dulwich.repo import Repo

    path = work / "dulwich.git"
    repo = Repo.init_bare(str(path), mkdir=True)
    config = repo.get_config()
    config.set((b"core",), b"fsyncObjectFiles", True)
    config.write_to_path()
    repo = Repo(str(path))
    head = _dulwich_commit(repo, None, base, b"base")
    t0 = time.perf_counter()
    head = _dulwich_commit(repo, head, add, b"add")
    commit_s = time.perf_counter() - t0

    def list_tree(repo) -> list[tuple[str, int]]:
        store = repo.object_store
        out = []

        def walk(sha, prefix):
            tree = store[sha]
            for entry in tree.iteritems():
                if entry.mode & 0o040000:
                    walk(entry.sha, prefix + entry.path.decode() + "/")
                else:
                    out.append((prefix + entry.path.decode(), len(store[entry.sha].as_raw_string())))

        walk(store[head].tree, "")
        return out

    repo = Repo(str(path))  # cold
    listing, tree_cold_s = timed(list_tree, repo)
    _, tree_warm_s = timed(list_tree, repo)

    from dulwich.object_store import tree_lookup_path

    store = repo.object_store
    root = store[head].tree
    t0 = time.perf_counter()
    for p in lookups:
        tree_lookup_path(store.__getitem__, root, p.encode())
    resolve_s = time.perf_counter() - t0
    assert isinstance(store[root], Tree)

    # what the store does: parsed trees cached by oid (the brief asks for it; pygit2's lookup is in C already)
    trees: dict[bytes, Tree] = {}

    def cached(sha):
        tree = trees.get(sha)
        if tree is None:
            tree = trees[sha] = store[sha]
        return tree

    t0 = time.perf_counter()
    for p in lookups:
        tree_lookup_path(cached, root, p.encode())
    resolve_cached_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    count, records = store.generate_pack_data(have=[], want=[head])
    sink = io.BytesIO()
    write_pack_data(sink.write, records, store.object_format, num_records=count)
    pack_s = time.perf_counter() - t0
    store.close()
    return {
        "resolve_cached_s": resolve_cached_s,
        **figures(listing, commit_s, tree_cold_s, tree_warm_s, resolve_s, pack_s, sink.tell() / 1e6),
    }


# ---- pygit2 --------------------------------------------------------------------------------------------------------
def _pygit2_commit(repo, parent, files: dict[str, bytes], message: str):
    """Blobs as loose objects, trees through an in-memory index built from the parent's tree, then the commit."""
    import pygit2

    index = pygit2.Index()
    if parent is not None:
        index.read_tree(repo[parent].tree)
    for path, data in files.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    sig = pygit2.Signature("bench", "bench@localhost")
    return repo.create_commit("refs/heads/main", sig, sig, message, tree, [parent] if parent else [])


def run_pygit2(work: Path, base: dict, add: dict, lookups: list[str]) -> dict:
    import pygit2

    pygit2.settings.enable_fsync_gitdir(True)
    path = work / "pygit2.git"
    repo = pygit2.init_repository(str(path), bare=True)
    head = _pygit2_commit(repo, None, base, "base")
    t0 = time.perf_counter()
    head = _pygit2_commit(repo, head, add, "add")
    commit_s = time.perf_counter() - t0

    def list_tree(repo) -> list[tuple[str, int]]:
        out = []
        odb = repo.odb

        def walk(tree, prefix):
            for entry in tree:
                if entry.type_str == "tree":
                    walk(repo[entry.id], prefix + entry.name + "/")
                else:
                    out.append((prefix + entry.name, odb.read_header(entry.id)[1]))

        walk(repo[head].tree, "")
        return out

    repo = pygit2.Repository(str(path))  # cold
    listing, tree_cold_s = timed(list_tree, repo)
    _, tree_warm_s = timed(list_tree, repo)

    tree = repo[head].tree
    t0 = time.perf_counter()
    for p in lookups:
        tree[p].id  # noqa: B018 - the lookup is what is timed
    resolve_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    builder = pygit2.PackBuilder(repo)
    builder.add_recur(head)
    out_dir = work / "pygit2-pack"
    out_dir.mkdir()
    builder.write(str(out_dir))
    pack_s = time.perf_counter() - t0
    pack_mb = sum(f.stat().st_size for f in out_dir.glob("*.pack")) / 1e6
    return figures(listing, commit_s, tree_cold_s, tree_warm_s, resolve_s, pack_s, pack_mb)


# ---- the store itself: gitstore.GitStore through the server's calls ----------------------------------------------
def run_store(kind: str, work: Path, base: dict, add: dict, lookups: list[str]) -> dict:
    """The store calls the server makes: commit, recursive listing, path lookups, and 50 one-file commits."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hub_tools.local_hub.gitstore import FileEntry, GitStore

    def op(path, data):
        return ("add", path, {"content": data})

    store = GitStore(work / "root")
    repo = store.create_repo("dataset", "bench/data", private=False, sdk=None, author="bench")
    store.commit(repo, "main", [op(p, d) for p, d in base.items()], title="base", message="", author="bench")
    t0 = time.perf_counter()
    head = store.commit(repo, "main", [op(p, d) for p, d in add.items()], title="add", message="", author="bench")
    commit_s = time.perf_counter() - t0

    def listing():
        entries = store.tree_view(repo, store.resolve(repo, "main")).list(recursive=True)
        return [(e.path, e.size) for e in entries if isinstance(e, FileEntry)]

    listed, tree_cold_s = timed(listing)
    _, tree_warm_s = timed(listing)
    t0 = time.perf_counter()
    for p in lookups:
        assert store.tree_view(repo, store.resolve(repo, "main")).file(p).size >= 0  # what /resolve/ does
    resolve_s = time.perf_counter() - t0
    meta0 = _disk(work / "root" / "repos")
    for i in range(50):
        head = store.commit(repo, "main", [op(f"small/{i}.txt", b"%d" % i)], title="one", message="", author="b")
    per_commit_kb = (_disk(work / "root" / "repos") - meta0) / 50 / 1e3
    store.close()
    return {
        **figures(listed, commit_s, tree_cold_s, tree_warm_s, resolve_s, None, None),
        "one_file_commit_kb": per_commit_kb,
        "head": head,
    }


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---- git CLI (the yardstick) ---------------------------------------------------------------------------------------
def git_cli_commit(tree_dir: Path, base: dict, add: dict, *, fsync: bool):
    """`git init` at `tree_dir`, commit `base`, then `git add -A && git commit` of `add`, timed.

    With `fsync`, objects and refs are fsynced as the hub's are (git then writes and syncs one loose object per
    file); without, git's default. Returns `git(*args, **kw)` for the repo and the seconds of the second commit.
    """
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@l", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@l"

    def git(*args, **kw):
        return subprocess.run(["git", "-C", str(tree_dir), *args], check=True, env=env, capture_output=True, **kw)

    def write(files):
        for p, data in files.items():
            (tree_dir / p).parent.mkdir(parents=True, exist_ok=True)
            (tree_dir / p).write_bytes(data)

    subprocess.run(["git", "init", "-q", str(tree_dir)], check=True)
    if fsync:
        git("config", "core.fsync", "objects,reference")
    git("config", "gc.auto", "0")
    write(base)
    git("add", "-A")
    git("commit", "-qm", "base")
    write(add)  # writing the work tree is not the commit: git reads files the hub already holds in memory
    t0 = time.perf_counter()
    git("add", "-A")
    git("commit", "-qm", "add")
    return git, time.perf_counter() - t0


def run_git_cli(work: Path, base: dict, add: dict, lookups: list[str]) -> dict:
    git, commit_s = git_cli_commit(work / "cli", base, add, fsync=True)
    t0 = time.perf_counter()
    listing = git("ls-tree", "-r", "-l", "HEAD").stdout.splitlines()
    tree_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pack = git("pack-objects", "--revs", "--stdout", input=b"HEAD\n").stdout
    pack_s = time.perf_counter() - t0
    return figures(listing, commit_s, tree_s, tree_s, None, pack_s, len(pack) / 1e6)


def run_one(backend: str, base_n: int, add_n: int) -> dict:
    base = make_files(0, base_n, seed=1)
    add = make_files(base_n, add_n, seed=2)
    rng = random.Random(3)
    every = sorted(base) + sorted(add)
    lookups = [rng.choice(every) for _ in range(2000)]
    work = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if backend in STORES:
            result = run_store(backend, work, base, add, lookups)
        else:
            result = {"dulwich": run_dulwich, "pygit2": run_pygit2, "git-cli": run_git_cli}[backend](
                work, base, add, lookups
            )
        result["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        stored = [f for f in work.rglob("*") if f.is_file() and not f.is_relative_to(work / "cli" / "data")]
        result["disk_mb"] = sum(f.stat().st_size for f in stored) / 1e6  # git objects/refs/index, not the files
        result["files_on_disk"] = len(stored)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=5000, help="files in the first commit")
    parser.add_argument("--add", type=int, default=10000, help="files the timed commit adds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stores", action="store_true", help="compare the two stores instead of the git libraries")
    parser.add_argument("--backend", choices=BACKENDS + STORES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.backend:
        print(json.dumps(run_one(args.backend, args.base, args.add)))
        return
    results = {}
    columns = STORES if args.stores else BACKENDS
    for backend in columns:
        cmd = [sys.executable, __file__, "--backend", backend, "--base", str(args.base), "--add", str(args.add)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 and "No module named 'pygit2'" in proc.stderr:
            print("pygit2 is not installed (pip install pygit2): its column is empty", file=sys.stderr)
            results[backend] = {}
            continue
        if proc.returncode != 0:
            sys.exit(f"{backend} failed:\n{proc.stderr}")
        results[backend] = json.loads(proc.stdout)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    keys = ["files", "commit_s", "tree_cold_s", "tree_warm_s", "resolve_s", "resolve_cached_s", "pack_s", "pack_mb"]
    keys += ["one_file_commit_kb", "rss_growth_mb", "disk_mb", "files_on_disk"]
    print(f"{'':18}" + "".join(f"{b:>12}" for b in columns))
    for key in keys:
        cells = [results[b].get(key) for b in columns]
        if all(c is None for c in cells):
            continue
        print(f"{key:18}" + "".join(f"{'-':>12}" if c is None else f"{c:12.3f}" for c in cells))


if __name__ == "__main__":
    main()
