"""`GET /v1/products?q=` (search, for building an anonymous basket) and `GET /v1/products/{id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from recnarr.serving.deps import CatalogDep
from recnarr.serving.schemas import MAX_ID, NO_CONTROLS, ProductCard, ProductList, errors

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("", response_model=ProductList, responses=errors(401, 503),
            summary="Search the catalog (words in title, brand, category)")
def search_products(
    catalog: CatalogDep,
    q: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROLS, description="all words must match")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    in_stock: Annotated[bool | None, Query(description="only in-stock (true) or out-of-stock (false)")] = None,
) -> ProductList:
    products, total = catalog.search(q, limit, offset, in_stock)
    return ProductList(products=[ProductCard.of(p) for p in products], total=total)


@router.get("/{product_id}", response_model=ProductCard, responses=errors(401, 404, 503),
            summary="One product as indexed (current price, discount, stock)")
def get_product(product_id: Annotated[str, Path(min_length=1, max_length=MAX_ID)], catalog: CatalogDep) -> ProductCard:
    if not catalog.has_product(product_id):
        raise HTTPException(404, f"unknown product id {product_id!r}")
    return ProductCard.of(catalog.product(product_id))
