"""Helpers shared by the serving tests (a module of its own: every tests/ folder has a `conftest`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def make_client(generator, **settings) -> TestClient:
    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    return TestClient(create_app(generator=generator, settings=Settings(**settings)))


# ------------------------------------------------------------------ a real server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECNARR_") or k == "RECNARR_CACHE"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update({"RECNARR_GENERATOR_FACTORY": "tiny_generator:build", "RECNARR_TORCH_THREADS": "1",
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


class Server:
    """`recnarr serve` in a subprocess; log in a file (shown when start-up fails)."""

    def __init__(self, log_path: Path, port: int | None = None, **env: str):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recnarr.cli", "serve", "--preset", "tiny", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=server_env(**env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn's graceful shutdown, then the worker stops
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


