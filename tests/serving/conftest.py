"""Serving fixtures: tiny generators (built once per session), TestClient apps, and a real uvicorn
process on 127.0.0.1 serving the tiny generator through `RECNARR_GENERATOR_FACTORY`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from serving_helpers import Server, make_client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Service settings come from RECNARR_* variables: none from the outer environment leak in
    (RECNARR_CACHE, the registry cache, and the browser test's RECNARR_E2E_* options stay)."""
    for key in list(os.environ):
        if key.startswith("RECNARR_") and key != "RECNARR_CACHE" and not key.startswith("RECNARR_E2E_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def tiny_gen(shared_cache):
    import tiny_generator

    return tiny_generator.build()


@pytest.fixture(scope="session")
def scripted_gen(shared_cache):
    import tiny_generator

    return tiny_generator.build_scripted()


@pytest.fixture(scope="session")
def lying_gen(shared_cache):
    import tiny_generator

    return tiny_generator.build_lying()


@pytest.fixture
def client(tiny_gen) -> Iterator[TestClient]:
    with make_client(tiny_gen) as c:
        yield c


@pytest.fixture
def scripted_client(scripted_gen) -> Iterator[TestClient]:
    with make_client(scripted_gen) as c:
        yield c


@pytest.fixture
def lying_client(lying_gen) -> Iterator[TestClient]:
    with make_client(lying_gen) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, shared_cache) -> Iterator[Server]:
    """One real API process for the session (random tiny GPT), shared by the live, fuzz, UI and browser tests."""
    server = Server(tmp_path_factory.mktemp("live") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
