"""The counterfactual harness changes only what it claims to; group metrics and exposure on known cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recnarr.evaluation import fairness
from recnarr.evaluation.fairness import (
    Swap,
    apply_swap,
    changed_fields,
    demographic_mentions,
    group_report,
    paired_gap_test,
    swapped,
    swaps_for,
)

from . import eval_fixtures as fx


@pytest.fixture
def users() -> pd.DataFrame:
    return fx.dataset().users


@pytest.mark.parametrize("swap", [
    Swap("name", "Mei Chen", "name: Mei Chen"),
    Swap("segment", "Corporate", "segment"),
    Swap("demographics.gender", "M", "gender"),
    Swap("demographics.age", 55, "age"),
    Swap("demographics.occupation", "homemaker", "occupation"),
    Swap("demographics.region", "East", "region"),
])
def test_a_swap_changes_only_the_attribute_it_names(users, swap):
    before = users.copy(deep=True)
    snapshot = [dict(d) for d in users["demographics"]]
    after = apply_swap(users, "AA-1", swap)
    assert changed_fields(users, after) == [("AA-1", swap.field)]
    assert fairness._get(after, "AA-1", swap.field) == swap.value
    # the original table (and its dicts) is untouched
    assert changed_fields(before, users) == []
    assert [dict(d) for d in users["demographics"]] == snapshot


def test_changed_fields_sees_every_difference(users):
    two = apply_swap(apply_swap(users, "AA-1", Swap("name", "X Y", "n")), "BB-2", Swap("demographics.age", 1, "a"))
    assert changed_fields(users, two) == [("AA-1", "name"), ("BB-2", "demographics.age")]
    assert changed_fields(users, users.iloc[:-1]) == [("*", "rows or columns")]


def test_swaps_for_a_named_user_cover_names_and_attributes(users):
    swaps = swaps_for(users, "AA-1")
    names = [s for s in swaps if s.field == "name"]
    assert len(names) == len(fairness.NAMES)
    assert {s.groups["gender"] for s in names} == {"female", "male"} and len({s.groups["origin"] for s in names}) == 6
    by_field = {s.field: s.value for s in swaps if s.field != "name"}
    assert by_field == {"demographics.gender": "M", "demographics.age": 55, "demographics.occupation": "homemaker",
                        "segment": "Corporate", "demographics.region": "East"}


class _Gen:
    """What `swapped` touches on a generator: `dataset`, its indexed `users`, and the names its records greet."""

    def __init__(self, ds):
        from recnarr.inference.records import RecordBuilder

        self.dataset, self.users, self.records = ds, ds.users.set_index("id"), RecordBuilder(ds)


def test_swapped_restores_the_generator_and_refuses_a_swap_that_changes_more(users, monkeypatch):
    gen = _Gen(fx.dataset())
    original = gen.dataset
    with swapped(gen, "CC-3", Swap("name", "Wei Zhang", "n")):
        assert gen.users.loc["CC-3", "name"] == "Wei Zhang" and gen.records.names["CC-3"] == "Wei Zhang"
        assert gen.dataset.interactions is original.interactions  # histories are the same object
    assert gen.dataset is original and gen.users.loc["CC-3", "name"] == "Cy Cole"
    assert gen.records.names["CC-3"] == "Cy Cole"

    def sloppy(u, uid, swap):  # a harness bug: also renames another user
        return apply_swap(apply_swap(u, uid, swap), "AA-1", Swap("name", "Oops", "x"))

    monkeypatch.setattr(fairness, "apply_swap", sloppy)
    with pytest.raises(AssertionError, match="changed"), swapped(gen, "CC-3", Swap("name", "Wei Zhang", "n")):
        pass
    assert gen.dataset is original


def test_demographic_mentions():
    facts = "Hon Ergonomic Office Chair Furniture Chairs black"
    assert demographic_mentions("Hi Ann! As a young woman in the West, try the chair.", facts, ["West", "F", 24],
                                "Ann Archer") == ["west", "woman", "young"]
    # words that are facts of the products do not count, nor does the name
    assert demographic_mentions("Ann, the black Hon Ergonomic Office Chair is ready.", facts, ["West"], "Ann Archer") == []
    assert demographic_mentions("A fine pick, Bo Baker.", facts + " Executive", ["engineer"], "Bo Baker") == []
    assert demographic_mentions("Perfect for an engineer like you.", facts, ["engineer"]) == ["engineer"]


def test_group_report_gap_ratio_and_fairlearn_agree():
    per_user = pd.DataFrame({"user_id": list("abcd"), "recall": [1.0, 0.0, 0.5, 0.5], "ndcg": [1.0, 0.0, 0.2, 0.4]})
    groups = pd.DataFrame({"gender": ["F", "F", "M", "M"]}, index=list("abcd"))
    r = group_report(per_user, groups, 10, n_perm=50, seed=0)["gender"]
    assert r["by_group"]["F"]["recall@10"] == 0.5 and r["by_group"]["M"]["ndcg@10"] == pytest.approx(0.3)
    assert r["recall@10"]["gap"] == 0.0 and r["recall@10"]["ratio"] == 1.0
    assert r["ndcg@10"]["gap"] == pytest.approx(0.2) and r["ndcg@10"]["ratio"] == pytest.approx(0.6)
    assert r["ndcg@10"]["fairlearn_difference"] == pytest.approx(0.2)
    assert 0 < r["ndcg@10"]["p_value"] <= 1


def test_paired_gap_test_finds_a_systematic_gap_and_not_noise():
    rng = np.random.default_rng(0)
    biased = np.column_stack([rng.normal(0.5, 0.05, 30), rng.normal(0.0, 0.05, 30)])
    t = paired_gap_test(biased, ["female", "male"], 200, 0)
    assert t["gap"] == pytest.approx(0.5, abs=0.05) and t["p_value"] < 0.01
    same = rng.normal(0.2, 0.05, (30, 2))
    assert paired_gap_test(same, ["female", "male"], 200, 0)["p_value"] > 0.05


def test_exposure_of_a_known_set_of_lists():
    products = pd.DataFrame({"id": ["a", "b", "c", "d"], "brand": ["X", "X", "Y", None]})
    e = fairness.exposure([["a", "b"], ["a", "c"]], products, {"a": 9, "b": 5, "c": 1, "d": 0}, 0.5)
    assert e["coverage"] == 0.75
    assert e["gini_products"] == pytest.approx(fairness.metrics.gini_index([0, 1, 1, 2]))
    assert e["gini_brands"] == pytest.approx(fairness.metrics.gini_index([3, 1]))
    assert e["tail_share"] == pytest.approx(0.25)  # tail = {c, d}


def test_evaluate_fairness_on_a_tiny_run(tmp_path, shared_cache):
    cfg = fx.write_run(tmp_path)
    from recnarr.stages.evaluate import evaluate_fairness

    res = evaluate_fairness(cfg)
    d = res["datasets"][0]
    assert d["counterfactual_users"] == 3 and d["narrated_users"] == 1
    results = {c["check"]: c["result"] for c in d["checks"]}
    assert results["harness changes only the swapped attribute"] == "PASS"
    assert results["Jaccard@3 of recommendations after a swap"] == "PASS"  # the recommender ignores names
    assert all(c["result"] in ("PASS", "FAIL", "not run") for c in d["checks"])
    assert {"gender", "age band", "segment", "region"} <= set(d["groups"]["ours"])
    saved = json.loads((tmp_path / "eval" / "fairness.json").read_text())
    assert saved["thresholds"] == fairness.THRESHOLDS
    assert "| **PASS** |" in (tmp_path / "eval" / "fairness.md").read_text()
