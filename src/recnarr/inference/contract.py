"""What serving, the batch job and evaluation may rely on from a narrative generator: the events a
stream yields, the errors a request can fail with, and the `Narrator` protocol.

`NarrativeGenerator` is the implementation; tests wrap it or stand in for it. Consumers match events
by class (`isinstance(event, Final)`), never by a string key, and errors by type, never by message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from recnarr.data.schema import Product, UnknownProduct, UnknownUser
from recnarr.inference.grounding import Citation

if TYPE_CHECKING:
    from recnarr.config import GenerationConfig
    from recnarr.data.narratives import NarrativeRecord
    from recnarr.data.schema import Dataset
    from recnarr.retrieval.recommender import Filters

__all__ = ["Event", "Final", "Narrative", "Narrator", "Products", "Result", "Tick", "Token", "UnknownProduct",
           "UnknownUser"]


@dataclass
class Narrative:
    text: str  # what the user sees: slots filled, verified (or the flagged fallback)
    verified: bool
    fallback: bool
    attempts: int
    product_id: str
    slotted: str = ""  # the model's raw output, slots unfilled
    errors: list[str] = field(default_factory=list)  # verifier errors of the last failed attempt
    citations: list[Citation] = field(default_factory=list)
    written: str = ""  # everything the model wrote under the grammar, filled, left-out sentences included


@dataclass
class Result:
    products: list[Product]
    scores: list[float]
    reasons: list[list[dict]]
    narrative: Narrative | None
    timings: dict[str, float]  # seconds: retrieval, prefill+decode (generate), verify, total
    tokens: dict[str, int]  # prompt and generated tokens of the accepted attempt
    versions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Products:
    """The recommended products, as soon as retrieval is done (before any text)."""

    products: list[dict[str, Any]]
    scores: list[float]
    reasons: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class Token:
    """A piece of verified narrative text; the pieces join to the final narrative's text exactly."""

    text: str


@dataclass(frozen=True)
class Tick:
    """A cooperative stream needs one decode step: the caller steps the shared session (`step()`)."""


@dataclass(frozen=True)
class Final:
    """The whole result; always the last event."""

    result: Result


Event = Products | Token | Tick | Final


@runtime_checkable
class Narrator(Protocol):
    """A loaded generator: retrieval, verified narratives, one shared decoding session."""

    dataset: Dataset
    versions: dict[str, Any]
    gen: GenerationConfig  # the sampling defaults omitted request fields take

    @property
    def block_size(self) -> int: ...  # the model's context: prompt + narrative tokens

    def warm_up(self) -> None: ...

    def step(self) -> None: ...  # one decode step for every cooperative stream in flight

    def stream(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
               text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
               sampling: dict[str, Any] | None = None, narrate: bool = True,
               cooperative: bool = False) -> Iterator[Event]: ...

    def recommend(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
                  text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
                  sampling: dict[str, Any] | None = None, narrate: bool = True) -> Result: ...

    def narrate(self, rec: NarrativeRecord, sampling: dict[str, Any] | None = None,
                tokens: dict[str, int] | None = None) -> Narrative: ...
