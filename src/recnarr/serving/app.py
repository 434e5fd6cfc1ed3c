"""The FastAPI app: settings, a lifespan that starts the model worker (which loads the generator once),
middleware, error mapping and one router per resource.

    uvicorn --factory recnarr.serving.app:create_app        # settings from RECNARR_* variables
    recnarr serve --preset inference run_dir=runs/cpu-small  # the same, config from the CLI

Loading happens on the model worker's thread after start-up, so `/healthz` answers at once and
`/readyz` turns 200 when model, index, embedding model and catalog view are in and warmed up (the
first request pays no load); recommendation requests get 503 + Retry-After until then. Concurrency and the queue are described in `recnarr.serving.worker`.

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
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from recnarr import __version__
from recnarr.inference.contract import Narrator
from recnarr.serving.body_limit import BodyLimitMiddleware
from recnarr.serving.deps import API_KEY_HEADER, ApiKeyDep, ServiceState
from recnarr.serving.metrics import Metrics, MetricsMiddleware
from recnarr.serving.routes import health, products, recommendations, users
from recnarr.serving.schemas import scrub_paths
from recnarr.serving.settings import Settings
from recnarr.serving.worker import JobTimeout, ModelWorker, NotReady, QueueFull


def generator_loader(settings: Settings, cfg: Any = None) -> Callable[[], Any]:
    """What the worker calls once to get the generator: the settings' factory, or `load_generator`
    on the run (cfg, else the settings' preset + overrides)."""

    def load() -> Any:
        if settings.generator_factory:
            module, func = settings.generator_factory.split(":")
            gen = getattr(importlib.import_module(module), func)(settings)
        else:
            from recnarr.config import load_config
            from recnarr.inference.generator import load_generator

            run_cfg = cfg if cfg is not None else load_config(settings.preset, settings.config_overrides())
            gen = load_generator(run_cfg, settings.checkpoint, settings.quantize)
        if not isinstance(gen, Narrator):
            raise TypeError(f"{settings.generator_factory or 'load_generator'} returned a "
                            f"{type(gen).__name__}, not a recnarr.inference.contract.Narrator")
        gen.warm_up()  # embedding model and first forward pass: not the first customer's wait
        return gen

    return load


def _busy(request: Request, exc: Exception) -> JSONResponse:
    retry = getattr(exc, "retry_after", 5)
    return JSONResponse({"detail": scrub_paths(str(exc))}, status_code=503, headers={"Retry-After": str(retry)})


def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=504)


def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field (`loc`) with pydantic's message. Unlike FastAPI's default, the input is
    not echoed back: it may be private, and a NaN in it would not even serialize (a 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    kind = request.headers.get("content-type", "")
    if request.method == "POST" and not _is_json(kind) and any(list(e.get("loc", ()))[:1] == ["body"] for e in errors):
        return JSONResponse({"detail": f"the request body must be JSON sent with Content-Type: application/json "
                                       f"(got {kind.split(';')[0].strip() or 'no Content-Type'})"}, status_code=415)
    return JSONResponse({"detail": [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")}
                                    for e in errors]}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's own handler, but its one 400 (a body it cannot decode) says what is wrong with it."""
    if exc.status_code == 400 and request.method == "POST":
        exc = StarletteHTTPException(400, "the request body cannot be read: it must be JSON in UTF-8")
    return await http_exception_handler(request, exc)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def create_app(generator: Any = None, settings: Settings | None = None, cfg: Any = None) -> FastAPI:
    """The app. `generator`: a ready NarrativeGenerator to serve (tests); otherwise one is loaded at
    start-up per `settings` (default: from the environment) and `cfg` (a RunConfig, default: the
    settings' preset)."""
    settings = settings or Settings()
    state = ServiceState(settings, Metrics())
    load = None
    if generator is None:
        load_generator = generator_loader(settings, cfg)

        def load() -> Any:  # everything the first request needs, before the worker says ready
            gen = load_generator()
            state.build_catalog(gen)
            return gen

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.worker = ModelWorker(load, generator=generator, max_queue=settings.max_queue,
                                   torch_threads=settings.model_threads(), max_batch=settings.max_batch)
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
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)  # 413 as JSON
    app.add_middleware(MetricsMiddleware, metrics=m)  # outermost: counts every request
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(QueueFull, _busy)
    app.add_exception_handler(NotReady, _busy)
    app.add_exception_handler(JobTimeout, _timeout)
    # the key guards every /v1 route when one is configured; without one the schema declares no security,
    # so what /openapi.json promises is what the server does (run.serve refuses a network bind then)
    guarded = [ApiKeyDep] if settings.api_key is not None else []
    for module in (recommendations, products, users):
        app.include_router(module.router, dependencies=guarded)
    app.include_router(health.router)
    return app
