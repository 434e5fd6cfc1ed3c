from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from retrieval_fixtures import random_catalog, random_cfg

from recnarr.retrieval.index import ProductIndex


@pytest.fixture
def rand_index() -> tuple[ProductIndex, pd.DataFrame, np.ndarray]:
    df, x = random_catalog()
    return ProductIndex.build(df, random_cfg(), vectors=x), df, x
