"""GGUF export (gguf package, no llama.cpp needed) and the llama.cpp backend (needs llama-cpp-python)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recnarr.layout import portable
from recnarr.model.gguf_export import CONFIG_KEY, GGUFError, export_gguf
from recnarr.model.gpt import GPT, PRESETS, GPTConfig

gguf = pytest.importorskip("gguf")

TEXTS = ["Hello world", "You've been stocking your office with Avery labels since spring.",
         "The Fellowes PB500 Electric Punch: $1,270.98, now 20% off!\n\n  café 😀 1234567 it's"]


@pytest.fixture(scope="module")
def tiny(shared_cache) -> GPT:
    torch.manual_seed(0)
    return GPT(PRESETS["tiny"]).eval()


@pytest.fixture(scope="module")
def f32_file(tiny, tmp_path_factory):
    return export_gguf(tiny, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")


def test_hf_export_carries_a_tokenizer_equal_to_tiktoken(tiny, tmp_path):
    transformers = pytest.importorskip("transformers")
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.model.hf import export_hf

    export_hf(tiny, tmp_path / "hf")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    enc = get_tokenizer()
    for text in TEXTS:
        assert hf.encode(text) == enc.encode(text)
    assert hf.eos_token_id == enc.eot_token == 50256


def test_gguf_file_holds_the_weights_the_tokenizer_and_the_config(tiny, f32_file):
    reader = gguf.GGUFReader(str(f32_file))
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied head written once
    assert len(tensors) == 4 + 12 * tiny.config.n_layer  # wte, wpe, ln_f w/b + 12 per block
    emb = tensors["token_embd.weight"]
    np.testing.assert_array_equal(np.asarray(emb.data).reshape(tiny.config.vocab_size, -1),
                                  tiny.transformer.wte.weight.detach().numpy())
    qkv = np.asarray(tensors["blk.0.attn_qkv.weight"].data).reshape(3 * tiny.config.n_embd, -1)
    np.testing.assert_array_equal(qkv, tiny.transformer.h[0].attn.c_attn.weight.detach().numpy())
    tokens = reader.get_field("tokenizer.ggml.tokens")
    assert len(tokens.data) == 50257 and tokens.contents(50256) == "<|endoftext|>"
    assert reader.get_field("tokenizer.ggml.merges").contents(0) == "Ġ t"
    assert reader.get_field("gpt2.context_length").contents() == tiny.config.block_size
    meta = json.loads(reader.get_field(CONFIG_KEY).contents())
    assert GPTConfig(**meta["model"]) == tiny.config


def test_gguf_q8_0_quantizes_matmul_weights_only(tiny, tmp_path):
    reader = gguf.GGUFReader(str(export_gguf(tiny, tmp_path, "q8_0")))
    types = {t.name: t.tensor_type for t in reader.tensors}
    Q = gguf.GGMLQuantizationType
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == Q.Q8_0
    assert types["position_embd.weight"] == types["blk.0.attn_norm.weight"] == types["blk.0.ffn_up.bias"] == Q.F32
    assert (tmp_path / "model-q8_0.gguf").exists()  # a folder gets model-<quant>.gguf


def test_gguf_export_errors_are_specific(tiny, tmp_path):
    with pytest.raises(GGUFError, match="unknown GGUF quantization 'q3'"):
        export_gguf(tiny, tmp_path / "x.gguf", "q3")
    with pytest.raises(GGUFError, match="bias=False"):
        export_gguf(GPT(GPTConfig(block_size=8, n_layer=1, n_head=1, n_embd=32, bias=False)), tmp_path / "y.gguf")
    assert not list(tmp_path.glob("*.gguf"))  # nothing half-written


def test_export_cli_gguf_from_a_quantized_serving_folder(tiny, tmp_path, capsys):
    from recnarr.cli import main
    from recnarr.model.quantize import quantize, save_quantized

    m = GPT(tiny.config)
    m.load_state_dict(tiny.state_dict())
    save_quantized(quantize(m, "int8"), tmp_path / "run" / "serving" / "merged")
    assert main(["export", "--format", "gguf", "--quant", "f16", f"run_dir={tmp_path / 'run'}"]) == 0
    out = tmp_path / "run" / "export" / "gguf" / "model-f16.gguf"
    assert out.is_file() and "gguf f16" in capsys.readouterr().out
    assert main(["export", "--format", "hf", "--quant", "q8_0", f"run_dir={tmp_path / 'run'}"]) == 1


# ---------------------------------------------------------------- llama.cpp
@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install "
                               "'recnarr[llamacpp]'); CI installs it, so these run there")


@pytest.fixture(scope="module")
def engines(llama_cpp, tiny, f32_file):
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.engine import Engine
    from recnarr.inference.llamacpp import LlamaCppModel

    tok = get_tokenizer()
    return Engine(tiny, tok, fast_layout=False), Engine(LlamaCppModel(f32_file, n_threads=1), tok)


def test_llamacpp_f32_matches_torch_logits_and_greedy_tokens(engines, tiny):
    torch_engine, llama_engine = engines
    assert llama_engine.config == tiny.config
    ids = torch_engine.tokenizer.encode(TEXTS[1])
    idx = torch.tensor([ids])
    with torch.no_grad():
        ref = tiny(idx)[0][0, -1]
    slots = llama_engine.backend.open(1, True)
    got = slots.prefill(0, ids)
    slots.close()
    assert (ref - got).abs().max().item() < 1e-3  # f32 both sides; different kernels and GELU code
    a = torch_engine.generate(ids, max_new_tokens=24, temperature=0)
    b = llama_engine.generate(ids, max_new_tokens=24, temperature=0)
    assert a.tokens == b.tokens and a.text == b.text


def test_llamacpp_backend_takes_the_engine_controls(engines):
    _, eng = engines
    prompt = TEXTS[0]
    params = dict(max_new_tokens=30, temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.3, seed=7)
    a, b = eng.generate(prompt, **params), eng.generate(prompt, **params)
    assert a.tokens == b.tokens  # seeded: reproducible, and runs do not leak cache state into each other
    assert eng.generate(prompt, **{**params, "seed": 8}).tokens != a.tokens
    assert "".join(eng.stream(prompt, **params)) == a.text
    stop = a.text[5:8]
    cut = eng.generate(prompt, **params, stop=[stop])
    assert cut.finish_reason == "stop" and cut.text == a.text[: a.text.index(stop)]
    batch = eng.generate_batch([prompt, TEXTS[1]], max_new_tokens=6, temperature=0)
    assert [g.tokens for g in batch] == [eng.generate(p, max_new_tokens=6, temperature=0).tokens
                                         for p in (prompt, TEXTS[1])]
    with pytest.raises(ValueError, match="torch backend's oracle"):
        eng.generate_uncached([prompt])


@pytest.mark.parametrize("quant", ["q8_0", "q4_0", "q4_k_m"])
def test_llamacpp_quantized_files_load_and_stay_close(llama_cpp, tiny, engines, tmp_path, quant):
    from recnarr.inference.llamacpp import LlamaCppModel

    model = LlamaCppModel(export_gguf(tiny, tmp_path, quant), n_threads=1)
    assert model.file_type == quant
    ids = engines[0].tokenizer.encode(TEXTS[2])
    idx = torch.tensor([ids])
    with torch.no_grad():
        ref = tiny(idx)[0][0, -1]
    slots = model.open(1, True)
    got = slots.prefill(0, ids)
    slots.close()
    err = (ref - got).abs().max().item() / ref.abs().max().item()
    assert err < (0.05 if quant == "q8_0" else 0.3)


def test_serving_model_finds_the_run_gguf(llama_cpp, tiny, f32_file, tmp_path):
    from recnarr.config import load_config
    from recnarr.inference.serving_model import load_serving_model

    folder = tmp_path / "run" / "export" / "gguf"
    folder.mkdir(parents=True)
    (folder / "model-f32.gguf").write_bytes(f32_file.read_bytes())
    cfg = load_config("tiny", [f"run_dir={tmp_path / 'run'}", "generation.backend=llamacpp"])
    model, info = load_serving_model(cfg)
    assert info == {"path": portable(folder / "model-f32.gguf"), "quantization": "gguf f32", "backend": "llamacpp"}
    assert not Path(info["path"]).is_absolute()  # an output never records where the host keeps it
    assert model.config == tiny.config
    with pytest.raises(FileNotFoundError, match="not a .gguf file"):
        load_serving_model(cfg, tmp_path / "run")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(ValueError, match="bad.gguf: llama.cpp cannot load"):
        load_serving_model(cfg, bad)


def test_pipeline_gguf_stage_writes_the_configured_quant(tiny, tmp_path):
    from recnarr.config import load_config
    from recnarr.model.checkpoint import save_checkpoint
    from recnarr.stages.gguf import gguf_stage

    save_checkpoint(tmp_path / "serving" / "merged", tiny)
    cfg = load_config("tiny", [f"run_dir={tmp_path}", "quantize.gguf=f16"])
    path = gguf_stage(cfg)
    assert path == tmp_path / "export" / "gguf" / "model-f16.gguf"
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.1.attn_output.weight"] == gguf.GGMLQuantizationType.F16


SHIPPED_GGUF = Path(__file__).resolve().parents[2] / "models" / "recnarr-cpu-small" / "model-q8_0.gguf"


def test_llamacpp_runs_without_weight_repacking_and_decodes_the_shipped_file(llama_cpp, monkeypatch):
    """llama.cpp's extra buffer types (weight repacking) segfault on decode on CPUs with AMX
    (ggml-org/llama.cpp issue 20824): they are off there (on elsewhere, the faster path), and the
    shipped q8_0 file decodes a prompt and 50 greedy tokens either way."""
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference import llamacpp as lc
    from recnarr.inference.engine import Engine, SamplingParams

    monkeypatch.delenv("RECNARR_LLAMACPP_EXTRA_BUFTS", raising=False)
    monkeypatch.setattr(lc, "cpu_has_amx", lambda *_: True)
    assert lc.use_extra_bufts() is False
    monkeypatch.setattr(lc, "cpu_has_amx", lambda *_: False)
    assert lc.use_extra_bufts() is True
    monkeypatch.setenv("RECNARR_LLAMACPP_EXTRA_BUFTS", "0")
    assert lc.use_extra_bufts() is False
    monkeypatch.setenv("RECNARR_LLAMACPP_EXTRA_BUFTS", "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        lc.use_extra_bufts()
    monkeypatch.undo()
    amx = "amx_tile" in Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else False
    assert not amx or lc.use_extra_bufts() is False, "on this AMX CPU the repacking must be off"
    if not SHIPPED_GGUF.is_file():
        pytest.skip(f"{SHIPPED_GGUF} is not in this checkout")
    for extra in (False, lc.use_extra_bufts()):
        model = lc.LlamaCppModel(SHIPPED_GGUF, n_threads=1, extra_bufts=extra)
        assert model.llm.model_params.use_extra_bufts is extra
        # the construction-time patch is undone: llama.cpp's own defaults are left as they were
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True
        out = Engine(model, get_tokenizer()).generate("### customer: Sally Hughsby\n", SamplingParams(
            max_new_tokens=50, min_new_tokens=50, temperature=0, stop_token_ids=()))
        assert len(out.tokens) == 50 and out.text.strip()
