"""Catalogs shaped unlike Superstore and MovieLens, end to end through the real commands: a fashion and
B2B atelier's export (JSONL catalog with nested specs, prices on request, descriptions, TSV sales, a
column map) and an Amazon Reviews 2023 category in its released format. Load -> index (MiniLM + FAISS)
-> the shipped model's narratives for every customer; the independent audit reads each one against
the raw tables and finds no false claim."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recnarr.cli import main
from recnarr.config import load_config
from recnarr.evaluation.audit import Auditor
from recnarr.inference.serving_model import SHIPPED

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
ATELIER = FIXTURES / "atelier"


def _atelier(tmp_path: Path) -> list[str]:
    return ["data.dataset=custom", f"data.catalog={ATELIER / 'catalog.jsonl'}",
            f"data.interactions={ATELIER / 'sales.tsv'}", f"data.users={ATELIER / 'clients.csv'}",
            f"data.column_map={ATELIER / 'columns.yaml'}"]


def _amazon(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache" / "amazon2023" / "Home_and_Kitchen"
    folder.mkdir(parents=True)
    for name in ("meta_Home_and_Kitchen.jsonl", "Home_and_Kitchen.jsonl"):
        shutil.copy(FIXTURES / "amazon2023" / name, folder)
    return ["data.dataset=amazon2023", "data.category=Home_and_Kitchen"]


@pytest.mark.slow
@pytest.mark.parametrize("catalog", [_atelier, _amazon], ids=["atelier", "amazon2023"])
def test_an_unseen_catalog_gets_verified_narratives_with_no_false_claim(catalog, tmp_path, shared_cache, capsys):
    if not (SHIPPED / "config.json").exists():
        pytest.skip("no shipped model")
    from recnarr.inference.generator import load_generator

    run = [f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"]
    data = catalog(tmp_path)
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "sources").symlink_to(shared_cache / "sources")  # the tokenizer's vocabulary
    assert main(["data", "load", "--preset", "tiny", *run, *data]) == 0
    assert main(["index", "--preset", "tiny", *run]) == 0  # no data.* repeated: the run's own catalog
    gen = load_generator(load_config("tiny", [*run, *data]), SHIPPED)
    ds = gen.dataset
    auditor = Auditor(ds)
    unpriced = set(ds.products.loc[ds.products["price"] <= 0, "id"])
    lines, false, unverified = [], [], []
    for seed, uid in enumerate(sorted(ds.users["id"])):
        r = gen.recommend(user_id=uid, n=2, sampling={"seed": seed})
        seen = set(ds.interactions.loc[ds.interactions["user_id"] == uid, "product_id"])
        assert not seen & {p.id for p in r.products}, (uid, "recommended what the customer already has")
        n = r.narrative
        claims = auditor.audit(n.text, n.product_id, uid)
        false += [(uid, n.text, c) for c in claims]
        if not n.verified:
            unverified.append((uid, n.text))
        if n.product_id in unpriced:
            assert "$" not in n.text and "%" not in n.text, n.text  # no price, no price claim
        lines.append(f"{uid} -> {n.product_id} [{'fallback' if n.fallback else 'model'}]: {n.text}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not unverified and not false, (unverified, false)
