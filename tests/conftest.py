"""Shared fixtures. The registry cache is shared across sessions ($RECNARR_CACHE or ~/.cache/recnarr),
so each source is fetched from its registry at most once per machine, and before any test blocks
the network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from recnarr.config import cache_dir
from recnarr.data import sources


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test, one torch thread: tiny models gain nothing from threads, and busy-waiting OpenMP
    threads crawl on a shared 2-core CPU (benchmarks in bench/ set their own)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """The shared cache, holding at least the GPT-2 vocabulary (fetched here, once)."""
    cache = cache_dir()
    sources.fetch("gpt2-vocab", cache)
    return cache


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection in this test raises (subprocess downloads are blocked by the tests themselves)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during a test that must run offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
