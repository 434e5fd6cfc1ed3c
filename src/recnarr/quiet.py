"""A quiet first run: the libraries' own chatter off stderr, unless asked for (`-v`, RECNARR_LOG_LEVEL).

sentence-transformers imports transformers, which probes (imports) torchao, peft and bitsandbytes.
On a CPU-only, offline machine those log about optional GPU or hub kernels they cannot load
("Failed to load ... _C_mxfp8", "Failed to load CPU gemm_4bit_forward from kernels-community"),
torchao's enum registration trips a torch `_pytree` deprecation warning, and transformers draws a
"Loading weights" bar. Their CPU paths work regardless; a new user reads these lines as errors.

Each is silenced where it is made: the named loggers are raised to ERROR (a real error still shows),
and transformers / huggingface_hub read their verbosity and progress-bar switches from the
environment, so those are set before they are imported. Nothing redirects stderr: our own progress
and any real warning or traceback still reach it.
"""

from __future__ import annotations

import logging
import os
import sys

# the loggers that report optional kernels this machine cannot load, and torch's note about torchao's enums
NOISY_LOGGERS = ("torchao", "bitsandbytes", "torch.utils._pytree")
LEVEL_ENV = "RECNARR_LOG_LEVEL"


def level() -> str:
    """The log level asked for: RECNARR_LOG_LEVEL (debug | info | warning | error), default warning."""
    name = os.environ.get(LEVEL_ENV, "warning").strip().lower()
    if name not in ("debug", "info", "warning", "error"):
        raise ValueError(f"{LEVEL_ENV} must be debug, info, warning or error, got {name!r}")
    return name


def bars() -> bool:
    """Whether our own progress bars draw: on a terminal only (a log file gets the stage's lines instead,
    not carriage-return frames)."""
    return sys.stderr.isatty()


def verbose() -> bool:
    return level() == "debug"


def quiet_libraries() -> None:
    """Silence the optional-kernel and progress-bar chatter (module docstring); a no-op when verbose.
    Idempotent; call it before sentence-transformers, transformers or peft is imported."""
    if verbose():
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # read at import time by transformers (its own log level) and huggingface_hub (every tqdm bar it owns)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def setup(verbose_flag: bool = False) -> None:
    """The CLI's logging: `-v` means RECNARR_LOG_LEVEL=debug (library chatter included); our own loggers
    print at the chosen level; the libraries are quieted (`quiet_libraries`)."""
    if verbose_flag:
        os.environ[LEVEL_ENV] = "debug"
    if LEVEL_ENV in os.environ:  # asked for: otherwise levels and handlers stay as the host set them
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("recnarr").setLevel(level().upper())
    quiet_libraries()
