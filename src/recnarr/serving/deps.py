"""Typed dependencies: the service state, the catalog view, the API key check, the admitted job."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recnarr.inference.contract import Narrator
from recnarr.serving.catalog import Catalog
from recnarr.serving.metrics import Metrics
from recnarr.serving.schemas import RecommendationRequest
from recnarr.serving.settings import Settings
from recnarr.serving.worker import Job, ModelWorker, NotReady, QueueFull

API_KEY_HEADER = "X-API-Key"


@dataclass
class ServiceState:
    """What the app holds between requests (one per app; the worker exists while the app runs)."""

    settings: Settings
    metrics: Metrics
    worker: ModelWorker | None = None
    _catalog: Catalog | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def require_worker(self) -> ModelWorker:
        if self.worker is None:
            raise NotReady("starting")
        return self.worker

    def build_catalog(self, generator: Any) -> Catalog:
        """Built once: at load time (before /readyz turns ready), or on first use for a given generator."""
        with self._lock:
            if self._catalog is None:
                self._catalog = Catalog(generator)
            return self._catalog

    @property
    def catalog(self) -> Catalog:
        worker = self.require_worker()
        if worker.generator is None:
            raise NotReady(worker.state, worker.error)
        return self.build_catalog(worker.generator)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_catalog(state: StateDep) -> Catalog:
    return state.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="needed when the service is started with RECNARR_API_KEY")


def require_api_key(state: StateDep, key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """401 unless the configured key is sent (no key configured: open)."""
    expected = state.settings.api_key
    if expected is None:
        return
    if key is None or not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header", headers={"WWW-Authenticate": "ApiKey"})


def job_source(req: RecommendationRequest):
    """What the model worker runs for a request: the generator's event stream (see generator.stream)."""

    def source(generator: Narrator):
        from recnarr.retrieval.recommender import Filters

        sampling = req.sampling.model_dump(exclude_none=True)
        if "max_new_tokens" in sampling:  # a short cap must not sit below the configured minimum length
            sampling["min_new_tokens"] = min(generator.gen.min_new_tokens, sampling["max_new_tokens"])
        return generator.stream(user_id=req.user_id, history=list(req.history), text=req.text,
                                filters=Filters(**req.filters.model_dump()), n=req.n, style=req.style,
                                sampling=sampling or None, narrate=req.narrate,
                                cooperative=True)

    return source


async def admit(req: RecommendationRequest, state: StateDep, catalog: CatalogDep) -> Job:
    """Check the ids (404) and queue the request for the model (503 if the queue is full). Runs before
    the response starts, so a streamed request still gets a proper status code."""
    if req.user_id is not None and req.user_id not in catalog.known_users:
        raise HTTPException(404, f"unknown user id {req.user_id!r}")
    unknown = [p for p in req.history if not catalog.has_product(p)]
    if unknown:
        raise HTTPException(404, f"unknown product id(s) in history: {', '.join(repr(p) for p in unknown[:5])}")
    worker = state.require_worker()
    try:
        return worker.submit(job_source(req), state.settings.request_timeout_s)
    except QueueFull:
        state.metrics.rejected.inc(reason="queue_full")
        raise
    except NotReady:
        state.metrics.rejected.inc(reason="not_ready")
        raise


JobDep = Annotated[Job, Depends(admit)]
ApiKeyDep = Depends(require_api_key)
