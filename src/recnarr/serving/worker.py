"""The model worker: one thread owns torch, requests wait for it in a bounded queue.

Concurrency model:

- Exactly one thread, started at app start-up, runs all torch work: it first loads the generator
  (model, index, dataset), then serves jobs. torch's intra-op threads already use the cores given
  to them; a second generating thread would only contend for the same cores.
- Continuous batching: a job's events come from the generator's cooperative stream, which yields a
  `tick` whenever its narrative needs a decode step. The worker keeps up to `max_batch` jobs in
  flight, pumps each to its next tick, then steps the generator's shared session once: every
  narrative in flight advances by one token in one forward, and a new job joins at the next step
  instead of waiting for the others to finish. A source without ticks simply runs to its end.
- A generation request becomes a job in a FIFO `queue.Queue(maxsize=max_queue)`. When the queue is
  full the request is answered at once with 503 and a `Retry-After` estimated from recent job
  durations; it never hangs. While the model is loading (or if loading failed), requests get 503.
- The event loop never runs torch: the worker pushes each event (products, tokens, final) to the
  request's asyncio queue with `call_soon_threadsafe`, so `/healthz`, `/readyz`, `/metrics` and the
  catalog routes answer while generations run.
- Each job has a deadline (`request_timeout_s`, queue wait included). A job whose client went away
  or timed out is cancelled: skipped if still queued, dropped from the batch at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from recnarr.inference.contract import Event, Narrator, Tick

log = logging.getLogger("recnarr.serving")

EventSource = Callable[[Narrator], Iterator[Event]]  # generator -> events


class NotReady(RuntimeError):
    """The model is loading, failed to load, or the worker stopped."""

    def __init__(self, state: str, error: str | None = None, retry_after: int = 5):
        super().__init__(f"the model is not ready (state: {state})" + (f": {error}" if error else ""))
        self.state, self.error, self.retry_after = state, error, retry_after


class QueueFull(RuntimeError):
    def __init__(self, max_queue: int, retry_after: int):
        super().__init__(f"server busy: {max_queue} requests are already waiting for the model; retry later")
        self.retry_after = retry_after


class JobTimeout(TimeoutError):
    pass


@dataclass
class Job:
    """One request's work and the channel its events come back through."""

    source: EventSource
    loop: asyncio.AbstractEventLoop
    deadline: float  # time.monotonic() by which the job must be done
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None

    def emit(self, kind: str, payload: Any = None) -> None:
        """Called from the worker thread."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop closed (shutdown): nobody is listening
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def queue_seconds(self) -> float:
        return (self.started if self.started is not None else time.monotonic()) - self.enqueued

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The job's events, in order; raises the job's exception, or JobTimeout past the deadline.
        Leaving the iteration early (client gone, error) cancels the job."""
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout("the request took longer than the configured timeout")
                try:
                    kind, payload = await asyncio.wait_for(self.events.get(), remaining)
                except TimeoutError:
                    raise JobTimeout("the request took longer than the configured timeout") from None
                if kind == "event":
                    yield payload
                elif kind == "error":
                    raise payload
                else:  # done
                    return
        finally:
            self.cancel()


class ModelWorker:
    """Owns the generator and the one thread that runs it (see the module docstring)."""

    def __init__(self, load: Callable[[], Any] | None = None, *, generator: Any = None, max_queue: int = 16,
                 torch_threads: int | None = None, on_job_done: Callable[[Job, float], None] | None = None,
                 max_batch: int = 16):
        if (load is None) == (generator is None):
            raise ValueError("give exactly one of `load` (a function returning the generator) or `generator`")
        self._load = load
        self.generator = generator
        self.state = "ready" if generator is not None else "starting"
        self.error: str | None = None
        self.max_queue = max_queue
        self.torch_threads = torch_threads
        self.on_job_done = on_job_done
        self.load_seconds: float | None = 0.0 if generator is not None else None
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self.max_batch = max_batch
        self._active: list[tuple[Job, Any]] = []  # jobs in flight and their event iterators
        self._durations: deque[float] = deque(maxlen=32)
        self._thread = threading.Thread(target=self._main, name="recnarr-model-worker", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel queued and running jobs and join the thread (the running job stops at its next token)."""
        self._stop.set()
        for job, _ in list(self._active):
            job.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.emit("error", NotReady("stopped", "the server is shutting down"))
            job.emit("done")
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.state = "stopped" if self.state != "failed" else self.state

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self._thread.is_alive()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        return bool(self._active)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: mean recent job time x jobs ahead, in [1, 300]."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return int(min(300, max(1, math.ceil(mean * (self.queued + 1)))))

    # ------------------------------------------------------------------ requests (event loop side)
    def submit(self, source: EventSource, timeout_s: float) -> Job:
        """Queue a job; raises NotReady or QueueFull at once (never blocks)."""
        if not self.ready:
            state = self.state if self.state != "ready" else "stopped"
            raise NotReady(state, self.error, retry_after=5)
        job = Job(source, asyncio.get_running_loop(), time.monotonic() + timeout_s)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(self.max_queue, self.retry_after()) from None
        return job

    # ------------------------------------------------------------------ the thread
    def _main(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        if self.generator is None:
            self.state = "loading"
            t = time.perf_counter()
            try:
                self.generator = self._load()
            except BaseException as e:  # reported on /readyz and /healthz, and logged
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
                log.exception("loading the generator failed; the service cannot answer recommendations")
                return
            self.load_seconds = time.perf_counter() - t
            self.state = "ready"
            log.info("generator loaded in %.1fs", self.load_seconds)
        while not self._stop.is_set():
            self._admit()
            if not self._active:
                continue
            ticked = False
            for job, events in list(self._active):
                if self._pump(job, events):
                    ticked = True
                else:
                    self._finish(job, events)
            if ticked:
                try:
                    self.generator.step()  # one token for every narrative in flight
                except Exception as e:  # a failed step fails the jobs in it, never the worker
                    log.exception("model worker: decode step failed")
                    for job, events in list(self._active):
                        job.emit("error", e)
                        self._finish(job, events)
        for job, events in list(self._active):
            self._finish(job, events)

    def _admit(self) -> None:
        """Take queued jobs while there is room in the batch (waiting briefly only when idle)."""
        while len(self._active) < self.max_batch:
            try:
                job = self._queue.get(timeout=0.2) if not self._active else self._queue.get_nowait()
            except queue.Empty:
                return
            if job.cancelled.is_set() or time.monotonic() >= job.deadline:
                job.emit("done")  # its client is gone or has timed out: don't spend the model on it
                continue
            job.started = time.monotonic()
            try:
                events = job.source(self.generator)
            except Exception as e:
                job.emit("error", e)
                job.emit("done")
                continue
            self._active.append((job, events))

    def _pump(self, job: Job, events: Any) -> bool:
        """Forward a job's events up to its next tick. True: it waits for a decode step; False: done."""
        try:
            for event in events:
                if job.cancelled.is_set():
                    return False
                if isinstance(event, Tick):
                    return True
                job.emit("event", event)
            return False
        except Exception as e:  # handed to the request, which maps it to a status
            job.emit("error", e)
            return False

    def _finish(self, job: Job, events: Any) -> None:
        self._active = [(j, e) for j, e in self._active if j is not job]
        if hasattr(events, "close"):
            try:
                events.close()  # frees the narrative's place in the batch if it left mid-stream
            except Exception:
                log.exception("closing a job's events failed")
        took = time.monotonic() - (job.started or time.monotonic())
        self._durations.append(took)
        job.emit("done")
        if self.on_job_done is not None:
            try:
                self.on_job_done(job, took)
            except Exception:  # metrics must never break serving
                log.exception("on_job_done hook failed")
