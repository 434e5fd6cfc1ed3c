"""`GET /healthz` (the process answers), `GET /readyz` (model, index, embedding model and catalog view
loaded and warmed up), `GET /metrics`.

No API key on these: orchestrators and scrapers call them, and they carry no user data and no paths.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from recnarr.serving.deps import StateDep
from recnarr.serving.metrics import CONTENT_TYPE
from recnarr.serving.schemas import Health, Readiness, SamplingIn, jsonable, public_versions, scrub_paths

SAMPLING_FIELDS = [f for f in SamplingIn.model_fields if f != "seed"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}},
            summary="Liveness: 200 while loading or ready, 503 if loading the model failed")
async def healthz(state: StateDep):
    worker = state.worker
    current = worker.state if worker is not None else "starting"
    if current == "failed":
        return JSONResponse(Health(status="failed", state=current).model_dump(), status_code=503)
    return Health(status="ok", state=current)


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
            summary="Readiness: 200 once everything the first request needs is loaded and warmed up")
def readyz(state: StateDep):  # sync: the first call builds the catalog view (pandas)
    worker = state.worker
    if worker is None or not worker.ready:
        body = Readiness(ready=False, state=worker.state if worker else "starting",
                         error=scrub_paths(worker.error) if worker and worker.error else None,
                         queue_max=worker.max_queue if worker else state.settings.max_queue)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    catalog = state.catalog
    gen = worker.generator
    versions = gen.versions or {}
    defaults = {k: getattr(gen.gen, k) for k in SAMPLING_FIELDS}
    block = gen.block_size
    return Readiness(ready=True, state=worker.state, products=catalog.n_products, users=catalog.n_users,
                     queue_waiting=worker.queued, queue_max=worker.max_queue,
                     load_seconds=round(worker.load_seconds, 3) if worker.load_seconds is not None else None,
                     versions=public_versions(versions), sampling_defaults=jsonable(defaults), block_size=block)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format 0.0.4)")
async def metrics(state: StateDep) -> PlainTextResponse:
    return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)
