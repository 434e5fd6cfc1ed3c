"""`POST /v1/recommendations` (JSON) and `POST /v1/recommendations/stream` (Server-Sent Events).

Stream events, in order: `products` (the cards, as soon as retrieval is done), `token` (narrative
text as the model writes it; slots already filled), then `final` (the whole verified response, whose
narrative replaces the streamed text when a retry or the flagged fallback was needed). A failure
after the stream started arrives as an `error` event with the status it would have had.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException
from fastapi.sse import EventSourceResponse, ServerSentEvent

from recnarr.inference.contract import Final, Products, Token, UnknownProduct, UnknownUser
from recnarr.serving.deps import JobDep, StateDep
from recnarr.serving.schemas import RecommendationResponse, errors, recommended, response_of
from recnarr.serving.worker import JobTimeout, NotReady

log = logging.getLogger("recnarr.serving")

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])

ERRORS = errors(400, 401, 404, 413, 415, 503, 504)


def as_http_error(e: Exception) -> HTTPException | None:
    """The HTTP error a generation failure maps to (None: a bug, answered 500 and logged)."""
    if isinstance(e, UnknownProduct | UnknownUser):
        return HTTPException(404, str(e))
    if isinstance(e, ValueError):
        return HTTPException(422, str(e))
    if isinstance(e, NotReady):
        return HTTPException(503, str(e), headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, JobTimeout):
        return HTTPException(504, str(e))
    return None


@router.post("", response_model=RecommendationResponse, responses=ERRORS,
             summary="Recommend products with a verified narrative")
async def recommend(job: JobDep, state: StateDep) -> RecommendationResponse:
    result = None
    try:
        async for event in job.stream():
            if isinstance(event, Final):
                result = event.result
    except Exception as e:
        if isinstance(e, JobTimeout):
            state.metrics.timeouts.inc()
        http = as_http_error(e)
        if http is None:
            raise
        raise http from e
    if result is None:  # the job was skipped (cancelled or its deadline passed while queued)
        state.metrics.timeouts.inc()
        raise HTTPException(504, "the request ran past the configured timeout while waiting for the model")
    state.metrics.observe_result(result, job.queue_seconds)
    return response_of(result, job.queue_seconds)


@router.post("/stream", response_class=EventSourceResponse, responses=ERRORS,
             summary="The same, streamed as Server-Sent Events: products, tokens, final")
async def recommend_stream(job: JobDep, state: StateDep) -> AsyncIterator[ServerSentEvent]:
    got_final = False
    try:
        async for event in job.stream():
            if isinstance(event, Products):
                cards = recommended(event.products, event.scores, event.reasons)
                yield ServerSentEvent(event="products", data={"products": [c.model_dump() for c in cards]})
            elif isinstance(event, Token):
                yield ServerSentEvent(event="token", data={"text": event.text})
            elif isinstance(event, Final):
                got_final = True
                state.metrics.observe_result(event.result, job.queue_seconds)
                yield ServerSentEvent(event="final", data=response_of(event.result, job.queue_seconds))
        if not got_final:
            state.metrics.timeouts.inc()
            yield ServerSentEvent(event="error", data={"status": 504, "detail": "the request ran past the "
                                                       "configured timeout while waiting for the model"})
    except Exception as e:
        if isinstance(e, JobTimeout):
            state.metrics.timeouts.inc()
        http = as_http_error(e)
        if http is None:
            log.error("recommendation stream failed: %s: %s", type(e).__name__, e, exc_info=e)
            http = HTTPException(500, "internal error while generating; see the server log")
        yield ServerSentEvent(event="error", data={"status": http.status_code, "detail": http.detail})

