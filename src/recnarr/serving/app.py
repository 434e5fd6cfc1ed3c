"""The FastAPI app: settings, a lifespan that starts the model worker (which loads the generator once),
middleware, error mapping and one router per resource.

    uvicorn --factory recnarr.serving.app:create_app        # settings from RECNARR_* variables
    recnarr serve --preset inference run_dir=runs/cpu-small  # the same, config from the CLI

Loading happens on the model worker's thread after start-up, so `/healthz` answers at once and
`/readyz` turns 200 when model and index are in; recommendation requests get 503 + Retry-After until
then. Concurrency and the queue are described in `recnarr.serving.worker`.

Privacy: request bodies are never logged (the access log has method, route template, status and
duration only; uvicorn's own access log is off), nothing a request carries is stored, and FastAPI's
telemetry logging of validation failures (which would include inputs) is disabled.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from recnarr import __version__
from recnarr.serving.deps import API_KEY_HEADER, ServiceState
from recnarr.serving.metrics import Metrics, MetricsMiddleware
from recnarr.serving.routes import health, products, recommendations, users
from recnarr.serving.settings import Settings
from recnarr.serving.worker import JobTimeout, ModelWorker, NotReady, QueueFull


def generator_loader(settings: Settings, cfg: Any = None) -> Callable[[], Any]:
    """What the worker calls once to get the generator: the settings' factory, or `load_generator`
    on the run (cfg, else the settings' preset + overrides)."""

    def load() -> Any:
        if settings.generator_factory:
            module, func = settings.generator_factory.split(":")
            return getattr(importlib.import_module(module), func)(settings)
        from recnarr.config import load_config
        from recnarr.inference.generator import load_generator

        run_cfg = cfg if cfg is not None else load_config(settings.preset, settings.config_overrides())
        return load_generator(run_cfg, settings.checkpoint, settings.quantize)

    return load


def _busy(request: Request, exc: Exception) -> JSONResponse:
    retry = getattr(exc, "retry_after", 5)
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(retry)})


def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=504)


def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field (`loc`) with pydantic's message. Unlike FastAPI's default, the input is
    not echoed back: it may be private, and a NaN in it would not even serialize (a 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")}
                                    for e in errors]}, status_code=422)


def create_app(generator: Any = None, settings: Settings | None = None, cfg: Any = None) -> FastAPI:
    """The app. `generator`: a ready NarrativeGenerator to serve (tests); otherwise one is loaded at
    start-up per `settings` (default: from the environment) and `cfg` (a RunConfig, default: the
    settings' preset)."""
    settings = settings or Settings()
    state = ServiceState(settings, Metrics())
    load = None if generator is not None else generator_loader(settings, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.worker = ModelWorker(load, generator=generator, max_queue=settings.max_queue,
                                   torch_threads=settings.torch_threads)
        state.worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.worker.stop)

    docs = settings.docs
    app = FastAPI(
        title="recnarr",
        version=__version__,
        summary="Product recommendations with grounded, verified narratives from a small GPT.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        max_body_size=settings.max_body_bytes,
        telemetry={"logs": False},
    )
    app.state.service = state
    m = state.metrics
    m.gauge("recnarr_queue_waiting", "Generation requests waiting for the model.",
            lambda: state.worker.queued if state.worker else 0)
    m.gauge("recnarr_worker_busy", "1 while the model worker is generating.",
            lambda: float(bool(state.worker and state.worker.busy)))
    m.gauge("recnarr_model_ready", "1 once model and index are loaded.",
            lambda: float(bool(state.worker and state.worker.ready)))

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", API_KEY_HEADER], max_age=600)
    app.add_middleware(MetricsMiddleware, metrics=m)  # outermost: counts every request
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(QueueFull, _busy)
    app.add_exception_handler(NotReady, _busy)
    app.add_exception_handler(JobTimeout, _timeout)
    for module in (recommendations, products, users, health):
        app.include_router(module.router)
    return app
