"""The `llamacpp` engine backend: a GGUF file (`recnarr export --format gguf`) run by llama.cpp.

llama.cpp only computes logits here. Sampling, penalties, stop sequences, seeds, UTF-8-safe
streaming, slot filling and the verifier all stay in recnarr's engine and generator, so the two
backends take the same controls and a greedy run is the same computation in another runtime.

One llama.cpp context holds one KV cache, so sessions take turns (a lock held while a session is
open) and a session runs its rows one at a time. Rolling a sentence back truncates that cache.
Needs the optional extra: `pip install 'recnarr[llamacpp]'` (llama-cpp-python, built from source).

On CPUs with Intel AMX, llama.cpp's weight repacking into its AMX buffer segfaults on decode
(ggml-org/llama.cpp issue 20824); the extra buffer types are off there (`use_extra_bufts`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from recnarr.inference.engine import outside_masked
from recnarr.model.gpt import GPTConfig

FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 7: "q8_0", 15: "q4_k_m"}  # general.file_type (LLAMA_FTYPE_*)


class LlamaCppUnavailable(ImportError):
    pass


def cpu_has_amx(llama_cpp=None) -> bool:
    """Intel AMX on this CPU (the kernel's flags) or in this llama.cpp build (its system info)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "amx_tile" in flags.split():
        return True
    info = llama_cpp.llama_print_system_info().decode(errors="replace") if llama_cpp is not None else ""
    return "AMX" in info


def use_extra_bufts(llama_cpp=None) -> bool:
    """Whether llama.cpp may repack weights into its extra buffer types.

    On CPUs with AMX the extra buffers include the AMX one, whose matmul segfaults on decode
    (ggml-org/llama.cpp issue 20824: `ggml_backend_amx_mul_mat`): there they are off. Elsewhere they
    stay on, since the CPU repack is llama.cpp's faster path (51M, 200+120 tokens, 2 cores: q8_0 0.470 s
    vs 0.509 s, q4_0 0.465 s vs 0.510 s; bench/generate_speed.py, the `_norepack` rows).
    RECNARR_LLAMACPP_EXTRA_BUFTS=0|1 overrides the choice."""
    forced = os.environ.get("RECNARR_LLAMACPP_EXTRA_BUFTS")
    if forced is None:
        return not cpu_has_amx(llama_cpp)
    if forced not in ("0", "1"):
        raise ValueError(f"RECNARR_LLAMACPP_EXTRA_BUFTS must be 0 or 1, got {forced!r}")
    if forced == "1" and cpu_has_amx(llama_cpp):
        print("warning: RECNARR_LLAMACPP_EXTRA_BUFTS=1 on a CPU with AMX: llama.cpp's AMX buffer may segfault "
              "(ggml-org/llama.cpp issue 20824)", file=sys.stderr)
    return forced == "1"


_params_lock = threading.Lock()


@contextlib.contextmanager
def _model_params(llama_cpp, extra_bufts: bool):
    """`Llama()` takes no `use_extra_bufts` argument (llama-cpp-python 0.3.36) but builds its model
    parameters from `llama_model_default_params()`: set the field there for the one construction."""
    lib = llama_cpp.llama_cpp
    default = lib.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = extra_bufts
        return p

    with _params_lock:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise LlamaCppUnavailable("the llamacpp backend needs llama-cpp-python: pip install 'recnarr[llamacpp]' "
                                  "(it builds llama.cpp from source, ~5 minutes)") from e
    return llama_cpp


def _config(llm) -> GPTConfig:
    meta, arch = llm.metadata, llm.metadata.get("general.architecture")
    if arch != "gpt2":
        raise ValueError(f"{llm.model_path}: architecture {arch!r}; the llamacpp backend runs GPT-2 GGUF files")
    return GPTConfig(block_size=int(meta["gpt2.context_length"]), vocab_size=llm.n_vocab(),
                     n_layer=int(meta["gpt2.block_count"]), n_head=int(meta["gpt2.attention.head_count"]),
                     n_embd=int(meta["gpt2.embedding_length"]), dropout=0.0, bias=True)


class LlamaCppModel:
    """A GGUF model loaded once; `Engine(LlamaCppModel(path), tokenizer)` generates with it."""

    max_rows = 1  # one llama.cpp context, one sequence: a session's other rows wait their turn

    def __init__(self, path: str | os.PathLike, n_threads: int | None = None, extra_bufts: bool | None = None):
        llama_cpp = import_llama_cpp()
        from llama_cpp._utils import suppress_stdout_stderr
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file (write one with `recnarr export --format gguf`)")
        threads = n_threads or torch.get_num_threads()
        self.extra_bufts = use_extra_bufts(llama_cpp) if extra_bufts is None else extra_bufts
        try:
            # n_ctx=0: the model's own context length (our block_size); a whole prompt is one decode
            # call (n_batch, n_ubatch up to the block); logits are kept for the last token only
            # (suppress: llama.cpp logs its context set-up regardless)
            with suppress_stdout_stderr(disable=False), _model_params(llama_cpp, self.extra_bufts):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=0, n_batch=4096, n_ubatch=4096, n_threads=threads,
                                           n_threads_batch=threads, logits_all=False, verbose=False)
        except ValueError as e:  # llama-cpp-python's error for a file llama.cpp cannot load
            raise ValueError(f"{path}: llama.cpp cannot load this file ({e})") from e
        self.config = _config(self.llm)
        ftype = int(self.llm.metadata.get("general.file_type", -1))
        self.file_type = FILE_TYPES.get(ftype, f"file_type {ftype}")
        self.path = path
        self.lock = threading.Lock()

    def open(self, rows: int, cached: bool) -> LlamaCppSlots:
        if not cached:
            raise ValueError("the llamacpp backend always uses its KV cache")
        return LlamaCppSlots(self)


class LlamaCppSlots:
    """The one sequence of the model's llama.cpp context, held (the lock) until the session closes.
    A rollback sets `n_tokens` back: llama.cpp's `eval` first drops the cache past it."""

    def __init__(self, model: LlamaCppModel):
        self.model, self.llm = model, model.llm
        model.lock.acquire()
        self.held = True

    def _logits(self) -> Tensor:
        row = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.model.config.vocab_size,))
        return torch.from_numpy(row.copy())  # (V,): a copy, the buffer is reused next call

    def prefill(self, row: int, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        self.llm.reset()  # a fresh sequence: eval() drops the cache past n_tokens = 0
        self.llm.eval(tokens)
        return outside_masked(self._logits(), vocab)

    def step(self, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        self.llm.eval(tokens)
        return outside_masked(self._logits(), vocab)[None, :]

    def truncate(self, row: int, length: int) -> None:
        self.llm.n_tokens = length

    def move(self, src: int, dst: int) -> None:
        raise ValueError("the llamacpp backend holds one sequence")

    def close(self) -> None:
        if self.held:
            self.held = False
            self.model.lock.release()
