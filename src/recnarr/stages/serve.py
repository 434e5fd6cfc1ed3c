"""`recnarr serve` (uvicorn on the API, recnarr.serving.app) and `recnarr demo-ui` (streamlit on recnarr.serving.ui).

Start both, in two terminals:

    recnarr serve --preset inference run_dir=runs/cpu-small          # API on http://127.0.0.1:8000
    recnarr demo-ui --api-url http://127.0.0.1:8000                  # UI on http://127.0.0.1:8501
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from recnarr import serving

UI_SCRIPT = Path(serving.__file__).with_name("ui.py")  # run as a script by streamlit, never imported


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging config plus our `recnarr.serving` loggers (access lines without paths or bodies)."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["recnarr"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def serve(cfg: Any, host: str | None = None, port: int | None = None, checkpoint: str | None = None,
          mode: str | None = None, backend: str | None = None) -> int:
    """Run the API with uvicorn. The run config comes from the CLI (`--preset`, key=value); service
    settings (API key, CORS, timeouts...) from RECNARR_* variables; `--checkpoint` / `--mode` override
    RECNARR_CHECKPOINT / RECNARR_QUANTIZE; `serve.max_queue` applies unless RECNARR_MAX_QUEUE is set.
    `--backend llamacpp` serves a GGUF file (generation.backend)."""
    import uvicorn

    if backend:
        cfg.generation.backend = backend

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    settings = Settings()
    updates: dict[str, Any] = {}
    if checkpoint:
        updates["checkpoint"] = checkpoint
    if mode:
        updates["quantize"] = mode
    if "max_queue" not in settings.model_fields_set:
        updates["max_queue"] = cfg.serve.max_queue
    settings = settings.model_copy(update=updates)
    host = host or cfg.serve.host
    settings.check_bind(host)  # before anything loads: an open bind is refused, not discovered later
    app = create_app(settings=settings, cfg=cfg)
    uvicorn.run(app, host=host, port=int(port or cfg.serve.port), access_log=False,
                log_config=log_config(settings.log_level), log_level=settings.log_level,
                timeout_graceful_shutdown=10)
    return 0


def demo_ui(cfg: Any, host: str | None = None, port: int | None = None, api_url: str | None = None) -> int:
    """Run the Streamlit demo (an HTTP client of the API; it loads no model)."""
    api = api_url or os.environ.get("RECNARR_API_URL") or f"http://{cfg.serve.host}:{cfg.serve.port}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT),
           "--server.address", host or cfg.serve.host, "--server.port", str(port or cfg.serve.ui_port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    env = {**os.environ, "RECNARR_API_URL": api}
    print(f"demo-ui: http://{host or cfg.serve.host}:{port or cfg.serve.ui_port}  (API: {api})", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
