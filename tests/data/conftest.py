from __future__ import annotations

from pathlib import Path

import pytest

from recnarr.data.schema import Dataset

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def superstore(shared_cache: Path) -> Dataset:
    from recnarr.data.superstore import load_superstore

    return load_superstore(shared_cache)


@pytest.fixture(scope="session")
def movielens(shared_cache: Path) -> Dataset:
    from recnarr.data.movielens import load_movielens

    return load_movielens(shared_cache)
