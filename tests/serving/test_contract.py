"""The generator seam (`recnarr.inference.contract`): typed events, typed errors, the Narrator protocol."""

from __future__ import annotations

import time

from recnarr.data.schema import UnknownProduct, UnknownUser
from recnarr.inference.contract import Final, Narrator, Products, Tick, Token


def test_the_generator_is_a_narrator_and_streams_typed_events(tiny_gen):
    assert isinstance(tiny_gen, Narrator)
    assert tiny_gen.block_size == tiny_gen.engine.config.block_size
    user = str(tiny_gen.dataset.interactions["user_id"].iloc[0])
    events = list(tiny_gen.stream(user, n=2, sampling={"seed": 1}))
    assert isinstance(events[0], Products) and isinstance(events[-1], Final)
    assert all(isinstance(e, Token) for e in events[1:-1])  # not cooperative: no ticks
    text = "".join(e.text for e in events[1:-1])
    assert text == events[-1].result.narrative.text
    cooperative = tiny_gen.stream(user, n=2, sampling={"seed": 1}, cooperative=True)
    kinds = set()
    for e in cooperative:
        kinds.add(type(e))
        if isinstance(e, Tick):
            tiny_gen.step()
    assert Tick in kinds and Final in kinds


def test_unknown_ids_are_typed_and_only_the_types_map_to_404():
    from recnarr.serving.routes.recommendations import as_http_error

    for err in (UnknownUser("unknown user id 'u9'"), UnknownProduct("unknown product id 'p9'")):
        assert isinstance(err, KeyError)  # callers catching KeyError still do
        http = as_http_error(err)
        assert http.status_code == 404 and http.detail == err.args[0]  # unquoted, as said
    # a KeyError from a bug is a 500 (None here), even if its message reads like an unknown id
    assert as_http_error(KeyError("unknown user id 'u9'")) is None


def test_an_unknown_user_deep_in_the_generator_raises_the_type(tiny_gen):
    import pytest

    with pytest.raises(UnknownUser):
        tiny_gen.recommend("no-such-customer", n=1, narrate=False)


class NotANarrator:
    def stream(self, *a, **kw):
        yield Final(None)


def not_a_narrator(settings):
    return NotANarrator()


def test_a_factory_returning_something_else_fails_the_load_and_says_what(shared_cache):
    from fastapi.testclient import TestClient

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    app = create_app(settings=Settings(generator_factory=f"{__name__}:not_a_narrator"))
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while c.get("/healthz").json()["state"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.02)
        error = c.get("/readyz").json()["error"]
        assert "NotANarrator" in error and "Narrator" in error
