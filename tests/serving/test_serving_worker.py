"""The model worker (one thread, bounded queue) and the hand-written Prometheus metrics, in isolation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from recnarr.serving.metrics import Counter, Histogram, Metrics
from recnarr.serving.worker import JobTimeout, ModelWorker, NotReady, QueueFull


def events_of(n: int, gate: threading.Event | None = None, fail: bool = False):
    def source(generator):
        for i in range(n):
            if gate is not None:
                assert gate.wait(10)
            yield {"type": "token", "i": i, "by": generator}
        if fail:
            raise ValueError("bad request for this model")
        yield {"type": "final"}

    return source


async def collect(job):
    return [e async for e in job.stream()]


def test_events_in_order_and_errors_propagate():
    async def main():
        w = ModelWorker(generator="G", max_queue=2)
        w.start()
        try:
            got = await collect(w.submit(events_of(3), 10))
            assert [e.get("i") for e in got] == [0, 1, 2, None] and got[0]["by"] == "G"
            with pytest.raises(ValueError, match="bad request"):
                await collect(w.submit(events_of(1, fail=True), 10))

            def raises_at_once(generator):
                raise ValueError("min_price > max_price")

            with pytest.raises(ValueError, match="min_price"):
                await collect(w.submit(raises_at_once, 10))
            assert len(await collect(w.submit(events_of(1), 10))) == 2  # the worker lives on
            assert w.ready and not w.busy and w.queued == 0
        finally:
            w.stop()
        assert w.state == "stopped"

    asyncio.run(main())


def test_queue_bound_cancel_and_timeout():
    async def main():
        gate = threading.Event()
        w = ModelWorker(generator="G", max_queue=1)
        w.start()
        try:
            running = w.submit(events_of(2, gate), 10)
            while not w.busy:
                await asyncio.sleep(0.01)
            queued = w.submit(events_of(1), 10)
            with pytest.raises(QueueFull) as e:
                w.submit(events_of(1), 10)
            assert e.value.retry_after >= 1
            queued.cancel()  # its client went away: the worker skips it
            gate.set()
            assert [x.get("i") for x in await collect(running)] == [0, 1, None]
            assert await collect(queued) == []
            gate.clear()
            short = w.submit(events_of(1, gate), 0.2)
            with pytest.raises(JobTimeout):
                await collect(short)
            assert short.cancelled.is_set()
            gate.set()
        finally:
            w.stop()

    asyncio.run(main())


def test_not_ready_while_loading_and_after_failure():
    async def main():
        gate = threading.Event()

        def load():
            assert gate.wait(10)
            return "G"

        w = ModelWorker(load, max_queue=1)
        w.start()
        with pytest.raises(NotReady):
            w.submit(events_of(1), 10)
        gate.set()
        for _ in range(200):
            if w.ready:
                break
            await asyncio.sleep(0.01)
        assert w.ready and w.load_seconds is not None
        w.stop()

        def broken():
            raise FileNotFoundError("no index")

        bad = ModelWorker(broken)
        bad.start()
        bad._thread.join(5)
        assert bad.state == "failed" and "no index" in bad.error
        with pytest.raises(NotReady, match="no index"):
            bad.submit(events_of(1), 10)

    asyncio.run(main())


def test_stop_cancels_queued_jobs():
    async def main():
        gate = threading.Event()
        w = ModelWorker(generator="G", max_queue=4)
        w.start()
        running = w.submit(events_of(5, gate), 10)
        while not w.busy:
            await asyncio.sleep(0.01)
        queued = w.submit(events_of(1), 10)
        t = time.perf_counter()
        stopper = asyncio.get_running_loop().run_in_executor(None, w.stop)
        await asyncio.sleep(0.05)
        gate.set()
        await stopper
        assert time.perf_counter() - t < 5
        with pytest.raises(NotReady, match="shutting down"):
            await collect(queued)
        assert len(await collect(running)) < 6  # stopped at the next token

    asyncio.run(main())


def test_worker_needs_exactly_one_source():
    with pytest.raises(ValueError):
        ModelWorker()
    with pytest.raises(ValueError):
        ModelWorker(lambda: 1, generator=2)


def test_histogram_and_counter_text():
    h = Histogram("lat_seconds", "latency", ("route",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v, route='/a"b')
    lines = h.render()
    assert 'lat_seconds_bucket{route="/a\\"b",le="0.1"} 1.0' in lines
    assert 'lat_seconds_bucket{route="/a\\"b",le="1.0"} 2.0' in lines
    assert 'lat_seconds_bucket{route="/a\\"b",le="+Inf"} 3.0' in lines
    assert 'lat_seconds_count{route="/a\\"b"} 3.0' in lines and h.count(route='/a"b') == 3
    c = Counter("hits_total", "hits", ("kind",))
    c.inc(kind="x")
    c.inc(2, kind="x")
    assert c.value(kind="x") == 3 and c.render()[-1] == 'hits_total{kind="x"} 3.0'
    with pytest.raises(ValueError):
        c.inc(-1, kind="x")
    with pytest.raises(ValueError):
        c.inc(other="y")
    text = Metrics().render()
    assert "# TYPE recnarr_http_requests_total counter" in text and text.endswith("\n")
