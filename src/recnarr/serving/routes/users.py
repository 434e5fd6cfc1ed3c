"""`GET /v1/users` (the dataset's customers, for the demo's picker) and `GET /v1/users/{id}/history`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from recnarr.serving.deps import CatalogDep
from recnarr.serving.schemas import (
    MAX_ID,
    NO_CONTROLS,
    HistoryEntry,
    ProductCard,
    UserHistory,
    UserList,
    UserSummary,
    errors,
)

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("", response_model=UserList, responses=errors(401, 503), summary="Customers of the dataset, by id")
def list_users(
    catalog: CatalogDep,
    q: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROLS, description="substring of the id or name")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    min_purchases: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> UserList:
    users, total = catalog.users(q, limit, offset, min_purchases)
    return UserList(users=[UserSummary(**u) for u in users], total=total)


@router.get("/{user_id}/history", response_model=UserHistory, responses=errors(401, 404, 503),
            summary="A customer's purchases (positive interactions), oldest first")
def user_history(
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID)],
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=500, description="the most recent items")] = 50,
) -> UserHistory:
    try:
        items = catalog.history(user_id)
    except KeyError:
        raise HTTPException(404, f"unknown user id {user_id!r}") from None
    user = catalog.user(user_id) or {}
    return UserHistory(user_id=user_id, name=user.get("name"), total=len(items),
                       items=[HistoryEntry(product=ProductCard.of(p), timestamp=ts) for p, ts in items[-limit:]])
