"""The one checkpoint format (Hugging Face GPT-2 export/import and the export commands: `model.hf`).

A checkpoint is a folder:

    model.safetensors        weights (the tied lm_head stored once, as transformer.wte.weight)
    config.json              GPTConfig
    meta.json                step, tokens seen, losses, data manifest hash, git commit, run config, ...
    trainer_state.safetensors + trainer_state.json   (optional) optimizer, RNG and data-position state

No pickles anywhere: tensors go to safetensors, everything else to JSON; a nested state dict is split
into the two by `flatten_state` / `unflatten_state`. Writes are atomic: the folder is written under a
temporary name and renamed into place, so a process killed at any moment leaves either the old or the
new checkpoint, never a mix (see `_atomic_replace`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from recnarr.model.gpt import GPT, GPTConfig

MODEL_FILE, CONFIG_FILE, META_FILE = "model.safetensors", "config.json", "meta.json"
STATE_TENSORS, STATE_JSON = "trainer_state.safetensors", "trainer_state.json"
TIED_KEY = "lm_head.weight"  # an alias of transformer.wte.weight, never stored twice


class CheckpointError(ValueError):
    """A checkpoint folder or file that is missing, corrupt or does not fit the model."""


# ------------------------------------------------------------------ nested state <-> tensors + JSON
def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, Tensor]]:
    """Split a nested structure of dicts/lists/scalars/tensors into a JSON-able skeleton, where each tensor
    is replaced by {"__tensor__": key}, and a flat {key: tensor} dict for safetensors."""
    tensors: dict[str, Tensor] = {}

    def walk(x: Any, key: str) -> Any:
        if isinstance(x, Tensor):
            tensors[key] = x.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(x, dict):
            for k in x:
                if not isinstance(k, (str, int)):
                    raise TypeError(f"state key {k!r} at {key or '<root>'} is neither str nor int")
            # int keys (optimizer state is keyed by parameter index) are kept with their type
            return {"__dict__": [[k, walk(v, f"{key}.{k}" if key else str(k))] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{key}.{i}" if key else str(i)) for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store {type(x).__name__} at {key or '<root>'} without pickling")

    return walk(obj, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# ------------------------------------------------------------------ files
def read_safetensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems do not allow opening directories
        _fsync_file(path)


def _recover(target: Path) -> None:
    """Finish or undo an interrupted `_atomic_replace` of `target`."""
    old = target.parent / f".{target.name}.old"
    if old.exists():
        if target.exists():
            shutil.rmtree(old)  # killed after the new folder was in place: drop the old one
        else:
            old.rename(target)  # killed between the two renames: the old checkpoint comes back
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written folder from a killed save


def _atomic_replace(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at `target`. A directory cannot be renamed over a non-empty one, so
    the old folder steps aside first (`.name.old`); `_recover` repairs a kill between the two renames."""
    old = target.parent / f".{target.name}.old"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    _fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)


def model_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's tensors as stored: contiguous, on the CPU, the tied alias dropped."""
    sd = model.state_dict()
    wte = sd.get("transformer.wte.weight")
    if TIED_KEY in sd and wte is not None and sd[TIED_KEY].data_ptr() == wte.data_ptr():
        del sd[TIED_KEY]
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Write a folder atomically: `with atomic_folder(path) as tmp:` write into `tmp`; when the block ends
    without an exception, `tmp` replaces `path` (see `_atomic_replace`); on an exception it is removed
    and `path` is untouched. Every checkpoint-like folder (full model, LoRA adapter, quantized) uses it."""
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        mode = 0o666 & ~_umask()  # safetensors writes 0600; a checkpoint should be as readable as any file
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, mode)
                _fsync_file(f)
        _fsync_dir(tmp)
        _atomic_replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_trainer_state(folder: str | os.PathLike, trainer_state: dict[str, Any]) -> None:
    """`trainer_state.safetensors` (every tensor) + `trainer_state.json` (the rest, tensors by reference)."""
    folder = Path(folder)
    skeleton, tensors = flatten_state(trainer_state)
    save_file(tensors, str(folder / STATE_TENSORS))
    _write_json(folder / STATE_JSON, skeleton)


def save_checkpoint(
    folder: str | os.PathLike,
    model: GPT,
    meta: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically. `trainer_state` is any nested dict of tensors and JSON values
    (optimizer state_dict, RNG states, the batch source's position); `meta` must be JSON-able."""
    return write_folder(folder, {MODEL_FILE: model_state(model)}, {CONFIG_FILE: asdict(model.config),
                                                                   META_FILE: meta or {}}, trainer_state)


def write_folder(folder: str | os.PathLike, weights: dict[str, dict[str, Tensor]], files: dict[str, Any],
                 trainer_state: dict[str, Any] | None = None, weights_meta: dict[str, str] | None = None) -> Path:
    """Every kind of checkpoint folder (a model, an adapter, a quantized model) written the same way:
    safetensors files and JSON files in a temporary folder renamed into place, so a kill mid-write leaves
    the old folder or the new one, never half of one."""
    with atomic_folder(folder) as tmp:
        for name, tensors in weights.items():
            save_file(tensors, str(tmp / name), metadata={"format": "pt", **(weights_meta or {})})
        for name, obj in files.items():
            _write_json(tmp / name, obj)
        if trainer_state is not None:
            write_trainer_state(tmp, trainer_state)
    return Path(folder)


def read_config(folder: str | os.PathLike) -> GPTConfig:
    """The GPTConfig in `folder/config.json`; every field must be present, no unknown ones."""
    path = Path(folder) / CONFIG_FILE
    raw = _read_json(path)
    names = {f.name for f in fields(GPTConfig)}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object of GPTConfig fields")
    unknown, missing = set(raw) - names, names - set(raw)
    if unknown or missing:
        raise CheckpointError(f"{path}: not a GPTConfig (unknown fields {sorted(unknown)}, missing {sorted(missing)})")
    try:
        cfg = GPTConfig(**raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid GPTConfig ({e})") from e
    for f in fields(GPTConfig):
        val, kind = getattr(cfg, f.name), str(f.type)
        ok = {"int": isinstance(val, int) and not isinstance(val, bool),
              "float": isinstance(val, (int, float)) and not isinstance(val, bool),
              "bool": isinstance(val, bool)}.get(kind, True)
        if not ok:
            raise CheckpointError(f"{path}: field {f.name} should be {kind}, got {val!r}")
    return cfg


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    _recover_if_needed(folder)
    return _read_json(folder / META_FILE)


def _recover_if_needed(folder: Path) -> None:
    if not folder.exists() and (folder.parent / f".{folder.name}.old").exists():
        _recover(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint folder here")


def load_weights(folder: str | os.PathLike, model: torch.nn.Module) -> None:
    """Load `folder/model.safetensors` into an existing model, strictly (every key, every shape)."""
    folder = Path(folder)
    _recover_if_needed(folder)
    sd = read_safetensors(folder / MODEL_FILE)
    if "transformer.wte.weight" in sd and TIED_KEY in model.state_dict():
        sd[TIED_KEY] = sd["transformer.wte.weight"]
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{folder / MODEL_FILE} does not fit the model of {folder / CONFIG_FILE}: {e}") from e


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> GPT:
    """Build the GPT described by `config.json` and load `model.safetensors` into it, strictly."""
    folder = Path(folder)
    _recover_if_needed(folder)
    model = GPT(read_config(folder))
    load_weights(folder, model)
    return model.to(device=device, dtype=dtype)


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> tuple[GPT, dict[str, Any]]:
    """The model and its meta.json."""
    return load_model(folder, device, dtype), read_meta(folder)


def load_trainer_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The nested trainer state saved beside the model, or None if the checkpoint has none."""
    folder = Path(folder)
    _recover_if_needed(folder)
    if not (folder / STATE_JSON).exists() and not (folder / STATE_TENSORS).exists():
        return None
    skeleton = _read_json(folder / STATE_JSON)
    tensors = read_safetensors(folder / STATE_TENSORS)
    try:
        return unflatten_state(skeleton, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / STATE_JSON} does not match {folder / STATE_TENSORS} ({e})") from e
