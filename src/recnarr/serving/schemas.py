"""Request and response bodies. Every request field is bounded here, so a bad value is a 422 that
names the field (`loc`) before anything reaches the model.

Privacy: an anonymous request carries product ids only (no names, no timestamps, no free-form
profile); `user_id` is for the customers already in the dataset.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from recnarr.choices import STYLES

MAX_ID = 64
MAX_TEXT = 500
MAX_HISTORY = 50

Style = Literal[STYLES]  # type: ignore[valid-type]  # "warm" | "concise" | "premium"
# no control characters in ids; free text may hold tabs and newlines but no NUL, ESC or other controls
# (they end up in logs, terminals and the prompt)
NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f\x7f]+$")]
UserId = ProductId
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROLS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SamplingIn(_Strict):
    """Sampling controls; omitted fields take the service's defaults (GenerationConfig)."""

    max_new_tokens: int | None = Field(None, ge=1, le=256, description="narrative length cap, tokens")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy")
    top_k: int | None = Field(None, ge=0, le=200, description="0 = off")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="nucleus mass; 1 = off")
    repetition_penalty: float | None = Field(None, ge=1.0, le=2.0, description="1 = off")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="fixes the sampled text")


class FiltersIn(_Strict):
    """Hard constraints on the recommended products."""

    in_stock: bool = True
    min_price: float | None = Field(None, ge=0, le=1e9, description="on the price paid (after discount); above "
                                    "max_price it is an empty range: no product matches")
    max_price: float | None = Field(None, ge=0, le=1e9)
    categories: list[Category] | None = Field(None, max_length=20, description="any level of the path matches")
    exclude_purchased: bool = True
    max_per_brand: int | None = Field(None, ge=1, le=10)
    max_per_category: int | None = Field(None, ge=1, le=50, description="at most this many results of one leaf "
                                         "category (default: the server's retrieval.max_per_category, 3)")
    exclude_ids: list[ProductId] = Field(default_factory=list, max_length=MAX_HISTORY)


class RecommendationRequest(_Strict):
    """A known customer (`user_id`), an anonymous basket (`history`: product ids), free text, or any mix.
    With none of them the most popular products are recommended."""

    user_id: UserId | None = Field(None, description="a customer of the dataset")
    history: list[ProductId] = Field(default_factory=list, max_length=MAX_HISTORY,
                                     description="anonymous basket: product ids, oldest first")
    text: str | None = Field(None, max_length=MAX_TEXT, pattern=TEXT_PATTERN,
                             description="what the shopper is looking for (no control characters but tab and newline)")
    n: int = Field(3, ge=1, le=10, description="products to recommend")
    style: Style = Field("warm", description="narrative tone")
    filters: FiltersIn = Field(default_factory=FiltersIn)
    sampling: SamplingIn = Field(default_factory=SamplingIn)
    narrate: bool = Field(True, description="false: products only, no narrative")

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"history": ["OFF-BI-10003527", "OFF-LA-10000248"], "n": 3, "style": "warm",
                      "sampling": {"temperature": 0.7, "top_k": 50, "top_p": 0.95}}]})


# ---------------------------------------------------------------------------------------- responses
class ProductCard(BaseModel):
    id: str
    title: str
    brand: str | None = None
    category: list[str] = Field(default_factory=list)
    price: float
    sale_price: float
    currency: str = "USD"
    discount: float = 0.0
    in_stock: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @classmethod
    def of(cls, p: Any) -> ProductCard:
        """From a `recnarr.data.schema.Product` or its asdict()."""
        d = p if isinstance(p, dict) else {f: getattr(p, f) for f in
                                            ("id", "title", "brand", "category", "price", "currency", "discount",
                                             "in_stock", "attributes", "description")}
        price, discount = float(d["price"]), float(d.get("discount") or 0.0)
        return cls(id=str(d["id"]), title=str(d["title"]), brand=d.get("brand") or None,
                   category=[str(c) for c in d.get("category") or []], price=price,
                   sale_price=round(price * (1.0 - discount), 2), currency=str(d.get("currency") or "USD"),
                   discount=discount, in_stock=bool(d.get("in_stock", True)),
                   attributes=dict(d.get("attributes") or {}), description=str(d.get("description") or ""))


class Reason(BaseModel):
    """A past item of the recommender's evidence for the product (`Recommender.contributions`)."""

    product_id: str
    title: str
    similarity: float = Field(description="cosine between the product's and this item's embeddings")
    copurchase_count: int = Field(0, description="train customers who had both (the support)")
    kind: str = Field("similar", description="the score term this item added most through: similar | ease | "
                                             "copurchase | sequence")
    contribution: float = Field(0.0, description="what this item added to the product's score, all terms")


class RecommendedProduct(ProductCard):
    score: float
    reasons: list[Reason] = Field(default_factory=list, description="why this pick: the past items that added "
                                  "most to its score, largest first")


class Citation(BaseModel):
    fact: str = Field(description="slot or kind of fact, e.g. price, past2, title")
    value: str = Field(description="the text as it appears in the narrative")
    source: str = Field(description="where it came from, e.g. product:ID.price")


class NarrativeOut(BaseModel):
    text: str
    verified: bool
    fallback: bool = Field(description="true: no verified sentence named the product; this is the plain "
                                       "factual narrative")
    attempts: int = Field(description="1 + sentences sampled again while decoding")
    product_id: str
    citations: list[Citation] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list, description="sentences left out, with the reason")


class RecommendationResponse(BaseModel):
    products: list[RecommendedProduct]
    narrative: NarrativeOut | None
    timings_ms: dict[str, float] = Field(description="queue, retrieval, generate (prefill + decode), verify, total")
    tokens: dict[str, int] = Field(description="prompt and generated tokens")
    tokens_per_second: float | None = None
    versions: dict[str, Any] = Field(default_factory=dict, description="model, index and catalog versions")


def recommended(products: list[Any], scores: list[float], reasons: list[list[dict]]) -> list[RecommendedProduct]:
    return [RecommendedProduct(**ProductCard.of(p).model_dump(), score=float(s),
                               reasons=[Reason(**{k: r[k] for k in Reason.model_fields if k in r}) for r in rs])
            for p, s, rs in zip(products, scores, reasons, strict=True)]


def response_of(result: Any, queue_s: float) -> RecommendationResponse:
    """From a `recnarr.inference.contract.Result`."""
    n = result.narrative
    narrative = None
    if n is not None:
        narrative = NarrativeOut(text=n.text, verified=n.verified, fallback=n.fallback, attempts=n.attempts,
                                 product_id=n.product_id, errors=list(n.errors),
                                 citations=[Citation(fact=c.fact, value=c.value, source=c.source) for c in n.citations])
    timings = {"queue": queue_s * 1000, **{k: float(v) * 1000 for k, v in result.timings.items()}}
    gen_s, generated = float(result.timings.get("generate", 0.0)), int(result.tokens.get("generated", 0))
    return RecommendationResponse(
        products=recommended(result.products, result.scores, result.reasons), narrative=narrative,
        timings_ms={k: round(v, 2) for k, v in timings.items()}, tokens={k: int(v) for k, v in result.tokens.items()},
        tokens_per_second=round(generated / gen_s, 1) if gen_s > 0 and generated else None,
        versions=public_versions(result.versions))


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------- catalog
class ProductList(BaseModel):
    products: list[ProductCard]
    total: int = Field(description="matches before the limit")


class UserSummary(BaseModel):
    id: str
    name: str | None = None
    segment: str | None = None
    purchases: int = Field(description="positive interactions (purchases, carts, ratings >= 4)")


class UserList(BaseModel):
    users: list[UserSummary]
    total: int


class HistoryEntry(BaseModel):
    product: ProductCard
    timestamp: str | None = None


class UserHistory(BaseModel):
    user_id: str
    name: str | None = None
    items: list[HistoryEntry] = Field(description="oldest first")
    total: int


class Health(BaseModel):
    status: Literal["ok", "failed"]
    state: str


class Readiness(BaseModel):
    ready: bool
    state: str = Field(description="starting | loading | ready | failed | stopped")
    error: str | None = None
    products: int | None = None
    users: int | None = None
    queue_waiting: int = 0
    queue_max: int = 0
    load_seconds: float | None = None
    versions: dict[str, Any] = Field(default_factory=dict)
    sampling_defaults: dict[str, Any] = Field(default_factory=dict, description="what omitted sampling fields take")
    block_size: int | None = Field(None, description="the model's context: prompt + max_new_tokens must fit")


class ErrorBody(BaseModel):
    detail: Any


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, always JSON (also on the SSE route, whose errors before
    the stream starts are plain JSON responses)."""
    text = {400: "the body cannot be decoded (it must be JSON in UTF-8)", 401: "missing or wrong X-API-Key", 404: "unknown id", 413: "request body over the configured limit",
            415: "the body must be JSON (Content-Type: application/json)",
            503: "model not ready or queue full; see Retry-After", 504: "the request ran past the configured timeout"}
    schema = {"application/json": {"schema": ErrorBody.model_json_schema()}}
    return {c: {"description": descriptions.get(f"e{c}", text[c]), "content": schema} for c in codes}


_ABS_PATH = re.compile(r"(?<![\w.:/-])(?:/[^\s'\"/,;:()]+)+/?")


def scrub_paths(text: str) -> str:
    """Absolute file-system paths replaced by their last part (`/srv/run/serving/int8` -> `int8`): what a
    client sees must not tell how the host is laid out."""
    return _ABS_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def public_versions(value: Any) -> Any:
    """Versions as shown to clients: JSON values with no absolute paths."""
    if isinstance(value, dict):
        return {str(k): public_versions(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_versions(v) for v in value]
    return scrub_paths(value) if isinstance(value, str) else jsonable(value)
