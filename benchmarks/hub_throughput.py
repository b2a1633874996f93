"""The local hub under its heaviest requests, each side by side with a yardstick in one run (issue 14).

    python benchmarks/hub_throughput.py              # 1 GB LFS file, 10,000 files onto 5,000, 20,000 paths
    python benchmarks/hub_throughput.py --lfs-mb 128 --base 500 --files 1000 --paths 2000 --json   # a short run

The hub runs as `babyhub hub serve` in a process of its own (its RSS is its own), on a root on the same disk as the
yardsticks' files. Measured:

1. **LFS transfer**: one N MB file up through the LFS batch API and its signed transfer URL (what huggingface_hub
   and git-lfs do), then down through `/resolve/`, against reading and writing the same file on the same disk
   (1 MiB reads, one fsync: the hub fsyncs what it stores). Throughput ratio (target >= 30 %), and the hub's RSS
   growth during each transfer (target < 100 MB: memory flat whatever the file's size).
2. **Many files**: a commit of 10,000 small files onto 5,000 through huggingface_hub's `create_commit` (preupload,
   then the NDJSON commit) against `git add -A && git commit` of the same files in a work tree (objects and refs
   fsynced, as the hub does); then a paths-info of 20,000 paths (15,000 present, 5,000 not) against
   `git cat-file --batch-check` of the same 20,000 `HEAD:path`.
3. **Latency under load**: while each heavy request runs, a separate process GETs a small file again and again:
   its p50/p99 (target p99 < 200 ms), next to the same probe on the idle hub.
4. **Commit metadata**: the bytes of new trees and commit object per commit, against the number of files it
   changes (1, 10, 100, 1000 of 5,000: at most linear) and against the repo's size (a one-file commit on repos of
   1,000, 5,000 and 15,000 files: nearly flat; the old JSON store wrote the whole file map, ~150 bytes per file).

Figures are only comparable inside one run; the load average at start and end is printed with them.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOKEN = "hf_bench_token_0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 20


# ---- the hub and its probes ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """`babyhub hub serve` in its own process; `rss()` is its resident memory in bytes."""

    def __init__(self, root: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tokens = root.parent / "tokens"
        tokens.write_text(TOKEN + "\n")
        env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub_tools", "hub", "serve", "--root", str(root), "--port", str(self.port)]
            + ["--token-file", str(tokens)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("babyhub hub serve did not start") from None
                time.sleep(0.05)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(20)


class PeakRss:
    """The hub's peak RSS while a block runs (sampled every 20 ms), and its RSS before."""

    def __init__(self, hub: Hub):
        self.hub = hub

    def __enter__(self):
        self.start = self.peak = self.hub.rss()
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, self.hub.rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.hub.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


class Probe:
    """A process that GETs a small file again and again (10 ms apart) until stopped; its latencies in seconds."""

    def __init__(self, url: str, out: Path):
        self.out = out
        self.stop_file = out.with_suffix(".stop")
        self.proc = subprocess.Popen([sys.executable, __file__, "--probe", url, str(out)])
        deadline = time.monotonic() + 30
        while not out.with_suffix(".ready").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the latency probe did not start")
            time.sleep(0.02)

    def finish(self) -> list[float]:
        self.stop_file.touch()
        self.proc.wait(60)
        return json.loads(self.out.read_text())


def probe_main(url: str, out: Path) -> None:
    import httpx

    latencies = []
    with httpx.Client(timeout=60) as client:
        client.get(url)
        out.with_suffix(".ready").touch()
        while not out.with_suffix(".stop").exists():
            t0 = time.perf_counter()
            client.get(url).raise_for_status()
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.01)
    out.write_text(json.dumps(latencies))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def under_probe(hub: Hub, probe_url: str, work: Path, name: str, action):
    """Run `action()` while the probe GETs; (its result, seconds, probe p50, probe p99, probe count)."""
    probe = Probe(probe_url, work / f"probe-{name}.json")
    time.sleep(0.3)
    t0 = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - t0
    latencies = probe.finish()
    return result, seconds, _percentile(latencies, 0.5), _percentile(latencies, 0.99), len(latencies)


# ---- 1. LFS transfer -----------------------------------------------------------------------------------------------
def make_big_file(path: Path, mb: int) -> str:
    sha = hashlib.sha256()
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        for i in range(mb):
            data = block[i % 256 :] + block[: i % 256]  # every MiB different, cheaply
            sha.update(data)
            f.write(data)
    return sha.hexdigest()


def disk_copy(source: Path, dest: Path) -> float:
    """Seconds to read `source` and write it to `dest` (1 MiB at a time, fsynced): the yardstick."""
    t0 = time.perf_counter()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return time.perf_counter() - t0


def lfs_upload(hub: Hub, repo: str, path: Path, sha256: str) -> float:
    import httpx

    size = path.stat().st_size
    batch = httpx.post(
        f"{hub.url}/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha256, "size": size}]},
        headers=AUTH,
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]

    def chunks():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    t0 = time.perf_counter()
    httpx.put(href, content=chunks(), timeout=600).raise_for_status()
    seconds = time.perf_counter() - t0
    line = {"key": "lfsFile", "value": {"path": "weights.bin", "algo": "sha256", "oid": sha256, "size": size}}
    body = json.dumps({"key": "header", "value": {"summary": "weights"}}) + "\n" + json.dumps(line)
    httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=AUTH).raise_for_status()
    return seconds


def lfs_download(hub: Hub, repo: str, dest: Path) -> float:
    import httpx

    t0 = time.perf_counter()
    with httpx.stream("GET", f"{hub.url}/{repo}/resolve/main/weights.bin", timeout=600) as response:
        response.raise_for_status()
        with open(dest, "wb") as f:
            for chunk in response.iter_bytes(CHUNK):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    return time.perf_counter() - t0


# ---- 2. many files -------------------------------------------------------------------------------------------------
def make_files(start: int, count: int, seed: int) -> dict[str, bytes]:
    """Small text files, 50 to a folder (a sharded dataset's layout)."""
    rng = random.Random(seed)
    words = [b"the", b"baby", b"mummy", b"ball", b"look", b"a", b"doggy", b"where", b"is", b"it"]
    return {
        f"data/d{i // 50:04d}/file{i:06d}.txt": b" ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        for i in range(start, start + count)
    }


def git_cli(work: Path, base: dict, add: dict, queries: list[str], fsync: bool) -> tuple[float, float]:
    """(seconds of `git add -A && git commit` of `add` onto `base`, seconds of a batch-check of `queries`).

    With `fsync`, objects and refs are fsynced as the hub's are (git then writes and syncs one loose object per
    file); without, git's default. The batch-check runs on packed objects (`git repack -ad` first), as the hub's are.
    """
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@l", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@l"

    def git(*args, **kw):
        return subprocess.run(["git", "-C", str(work), *args], check=True, env=env, capture_output=True, **kw)

    def write(files):
        for path, data in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(data)

    subprocess.run(["git", "init", "-q", str(work)], check=True)
    if fsync:
        git("config", "core.fsync", "objects,reference")
    git("config", "gc.auto", "0")
    write(base)
    git("add", "-A")
    git("commit", "-qm", "base")
    write(add)  # the work tree is written first: the hub gets the files in its request, git reads them from disk
    t0 = time.perf_counter()
    git("add", "-A")
    git("commit", "-qm", "add")
    commit_s = time.perf_counter() - t0
    git("repack", "-adq")
    t0 = time.perf_counter()
    out = git("cat-file", "--batch-check", input="".join(f"HEAD:{q}\n" for q in queries).encode()).stdout
    check_s = time.perf_counter() - t0
    assert out.count(b"\n") == len(queries)
    return commit_s, check_s


def paths_info(hub: Hub, repo: str, queries: list[str]) -> tuple[float, int]:
    import httpx

    t0 = time.perf_counter()
    response = httpx.post(f"{hub.url}/api/datasets/{repo}/paths-info/main", json={"paths": queries}, timeout=600)
    response.raise_for_status()
    return time.perf_counter() - t0, len(response.json())


# ---- 4. commit metadata --------------------------------------------------------------------------------------------
def new_metadata_bytes(repo_dir: Path, packs_before: set[str]) -> int:
    """Raw bytes of the trees and commits in the packs written since `packs_before` (blobs are the content)."""
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import PackData

    total = 0
    for pack in (repo_dir / "objects" / "pack").glob("*.pack"):
        if pack.name in packs_before:
            continue
        with PackData(str(pack), DEFAULT_OBJECT_FORMAT) as data:
            for unpacked in data.iter_unpacked():
                if unpacked.pack_type_num in (1, 2):  # commit, tree
                    total += len(b"".join(unpacked.decomp_chunks))
    return total


def ndjson_commit(hub: Hub, repo: str, files: dict[str, bytes], title: str) -> None:
    import base64

    import httpx

    lines = [json.dumps({"key": "header", "value": {"summary": title}})]
    for path, data in files.items():
        lines.append(json.dumps({"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode()}}))
    response = httpx.post(f"{hub.url}/api/datasets/{repo}/commit/main", content="\n".join(lines), headers=AUTH)
    response.raise_for_status()


def metadata_of_a_commit(hub: Hub, root: Path, repo: str, files: dict[str, bytes]) -> int:
    repo_dir = root / "repos" / "datasets" / f"{repo}.git"
    before = {p.name for p in (repo_dir / "objects" / "pack").glob("*.pack")}
    ndjson_commit(hub, repo, files, f"{len(files)} files")
    return new_metadata_bytes(repo_dir, before)


def create_dataset(api, repo: str) -> None:
    api.create_repo(repo, repo_type="dataset")


# ---- the run -------------------------------------------------------------------------------------------------------
def run(args) -> dict:
    from huggingface_hub import HfApi

    work = Path(tempfile.mkdtemp(prefix="hub-throughput-", dir=args.workdir))
    out: dict = {"load_start": os.getloadavg()}
    hub = Hub(work / "root")
    try:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("bench/probe")
        api.upload_file(path_or_fileobj=b"small\n", path_in_repo="small.txt", repo_id="bench/probe")
        probe_url = f"{hub.url}/bench/probe/resolve/main/small.txt"
        _, _, p50, p99, count = under_probe(hub, probe_url, work, "idle", lambda: time.sleep(2))
        out["idle"] = {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "requests": count}

        # 1. LFS transfer against the disk
        big = work / "big.bin"
        sha = make_big_file(big, args.lfs_mb)
        copy_s = disk_copy(big, work / "copy.bin")
        (work / "copy.bin").unlink()
        api.create_repo("bench/weights")
        with PeakRss(hub) as up_rss:
            up_s, up_wall, up_p50, up_p99, _ = under_probe(
                hub, probe_url, work, "upload", lambda: lfs_upload(hub, "bench/weights", big, sha)
            )
        with PeakRss(hub) as down_rss:
            down_s, _, down_p50, down_p99, _ = under_probe(
                hub, probe_url, work, "download", lambda: lfs_download(hub, "bench/weights", work / "down.bin")
            )
        assert (work / "down.bin").stat().st_size == big.stat().st_size
        mb = args.lfs_mb * CHUNK / 1e6
        out["lfs"] = {
            "mb": mb,
            "disk_copy_mb_s": mb / copy_s,
            "upload_mb_s": mb / up_s,
            "download_mb_s": mb / down_s,
            "upload_vs_disk": copy_s / up_s,
            "download_vs_disk": copy_s / down_s,
            "upload_rss_growth_mb": up_rss.growth_mb,
            "download_rss_growth_mb": down_rss.growth_mb,
            "upload_probe_p50_ms": up_p50 * 1e3,
            "upload_probe_p99_ms": up_p99 * 1e3,
            "download_probe_p50_ms": down_p50 * 1e3,
            "download_probe_p99_ms": down_p99 * 1e3,
        }
        for name in ("big.bin", "down.bin"):
            (work / name).unlink()

        # 2. many files against the git CLI
        base, add = make_files(0, args.base, 1), make_files(args.base, args.files, 2)
        present = sorted(base) + sorted(add)
        queries = random.Random(3).sample(present, min(len(present), args.paths * 3 // 4))
        queries += [f"data/missing/{i}.txt" for i in range(args.paths - len(queries))]
        api.create_repo("bench/many", repo_type="dataset")
        ndjson_commit(hub, "bench/many", base, "base")
        from huggingface_hub import CommitOperationAdd

        def commit_many() -> None:
            ops = [CommitOperationAdd(path, data) for path, data in add.items()]
            api.create_commit("bench/many", ops, commit_message="many", repo_type="dataset")

        _, commit_s, c_p50, c_p99, _ = under_probe(hub, probe_url, work, "commit", commit_many)
        (paths_s, found), _, pi_p50, pi_p99, _ = under_probe(
            hub, probe_url, work, "paths-info", lambda: paths_info(hub, "bench/many", queries)
        )
        git_commit_s, git_check_s = git_cli(work / "cli", base, add, queries, fsync=True)
        shutil.rmtree(work / "cli")
        git_default_s, _ = git_cli(work / "cli", base, add, queries, fsync=False)
        shutil.rmtree(work / "cli")
        out["many_files"] = {
            "files_added": len(add),
            "onto": len(base),
            "hub_commit_s": commit_s,
            "git_commit_s": git_commit_s,
            "git_commit_no_fsync_s": git_default_s,
            "commit_hub_vs_git": commit_s / git_commit_s,
            "commit_hub_vs_git_no_fsync": commit_s / git_default_s,
            "paths": len(queries),
            "found": found,
            "hub_paths_info_s": paths_s,
            "git_batch_check_s": git_check_s,
            "paths_info_hub_vs_git": paths_s / git_check_s,
            "commit_probe_p50_ms": c_p50 * 1e3,
            "commit_probe_p99_ms": c_p99 * 1e3,
            "paths_info_probe_p50_ms": pi_p50 * 1e3,
            "paths_info_probe_p99_ms": pi_p99 * 1e3,
        }

        # 4. commit metadata against the change and against the repo's size
        by_change = {}
        create_dataset(api, "bench/meta")
        meta_base = make_files(0, 5000, 4)
        ndjson_commit(hub, "bench/meta", meta_base, "base")
        paths = sorted(meta_base)
        for n in (1, 10, 100, 1000):
            chosen = random.Random(n).sample(paths, n)
            by_change[n] = metadata_of_a_commit(hub, work / "root", "bench/meta", {p: b"v%d" % n for p in chosen})
        by_size = {}
        for size in (1000, 5000, 15000):
            repo = f"bench/size-{size}"
            create_dataset(api, repo)
            ndjson_commit(hub, repo, make_files(0, size, 5), "base")
            by_size[size] = metadata_of_a_commit(hub, work / "root", repo, {"data/d0000/file000000.txt": b"changed"})
        out["metadata"] = {"by_changed_files": by_change, "one_file_by_repo_files": by_size}
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    out["load_end"] = os.getloadavg()
    return out


def _ms(row: dict, name: str) -> str:
    prefix = f"{name}_probe_" if name else ""
    return f"{row[prefix + 'p50_ms']:6.1f} / {row[prefix + 'p99_ms']:6.1f} ms"


def report(out: dict) -> str:
    lfs, many, meta = out["lfs"], out["many_files"], out["metadata"]
    lines = [
        f"load average at start {out['load_start'][0]:.1f}, at end {out['load_end'][0]:.1f} (2 cores)",
        "",
        f"LFS transfer of {lfs['mb']:.0f} MB           MB/s    vs disk   hub RSS growth   probe p50 / p99",
        f"  disk read+write+fsync    {lfs['disk_copy_mb_s']:8.1f}",
        f"  upload (batch + PUT)     {lfs['upload_mb_s']:8.1f}   {lfs['upload_vs_disk']:7.0%}   "
        f"{lfs['upload_rss_growth_mb']:8.1f} MB   {_ms(lfs, 'upload')}",
        f"  download (/resolve/)     {lfs['download_mb_s']:8.1f}   {lfs['download_vs_disk']:7.0%}   "
        f"{lfs['download_rss_growth_mb']:8.1f} MB   {_ms(lfs, 'download')}",
        "",
        f"{many['files_added']:,} files onto {many['onto']:,}      hub s    git s   hub/git   probe p50 / p99",
        f"  commit (git fsyncs too)  {many['hub_commit_s']:7.2f}  {many['git_commit_s']:7.2f}  "
        f"{many['commit_hub_vs_git']:7.2f}x   {_ms(many, 'commit')}",
        f"  commit (git, no fsync)   {many['hub_commit_s']:7.2f}  {many['git_commit_no_fsync_s']:7.2f}  "
        f"{many['commit_hub_vs_git_no_fsync']:7.2f}x",
        f"  paths-info ({many['paths']:,}, {many['found']:,} found) {many['hub_paths_info_s']:7.2f}  "
        f"{many['git_batch_check_s']:7.2f}  {many['paths_info_hub_vs_git']:7.2f}x   {_ms(many, 'paths_info')}",
        f"  idle hub probe                                       {_ms(out['idle'], '')}",
        "",
        "commit metadata (new trees + commit, bytes)",
    ]
    for n, size in meta["by_changed_files"].items():
        lines.append(f"  {int(n):5d} changed files of 5,000  {size:9,d}   {size / int(n):9,.0f} per file")
    for files, size in meta["one_file_by_repo_files"].items():
        lines.append(f"  1 changed file of {int(files):6,d}     {size:9,d}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfs-mb", type=int, default=1024, help="size of the LFS file (MiB)")
    parser.add_argument("--base", type=int, default=5000, help="files already in the repo")
    parser.add_argument("--files", type=int, default=10000, help="files the big commit adds")
    parser.add_argument("--paths", type=int, default=20000, help="paths in the paths-info")
    parser.add_argument("--workdir", default=None, help="where the files and the hub's root go (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--probe", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)  # the probe process
    args = parser.parse_args(argv)
    if args.probe:
        probe_main(args.probe[0], Path(args.probe[1]))
        return
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    out = run(args)
    print(json.dumps(out, indent=1) if args.json else report(out))


if __name__ == "__main__":
    main()
