"""The adversarial suite: true narratives for real customers of three catalogs (Superstore, MovieLens and a
home-and-fashion shop shaped unlike both), each perturbed into false ones the way a small model goes
wrong. The verifier must accept every true original and reject every perturbation (at least 300)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from recnarr.data.catalog import load_catalog
from recnarr.data.claims import LINKS, slot_values
from recnarr.data.narratives import Writer
from recnarr.inference.grounding import ground, verify
from recnarr.inference.records import RecordBuilder

HOME = Path(__file__).parent / "fixtures" / "home"
# claims that are true of some other catalog, never of these records
FOREIGN = {"superstore": ("a comedy movie", "It is good for a laugh."),
           "movielens": ("a binding machine", "It keeps reports and handouts organized."),
           "home": ("a stacking chair", "It keeps the printer stocked.")}
POPULARITY = ("It is best-selling.", "Many customers love it.", "Customers buy it every week.",
              "It is our most popular pick.")


def home_dataset():
    return load_catalog(HOME / "products.csv", HOME / "orders.jsonl", HOME / "customers.jsonl",
                        HOME / "columns.yaml", name="home")


def true_records(ds, n: int) -> list:
    """Records for real customers (most active first), each for a product they never bought."""
    builder = RecordBuilder(ds)
    products = sorted(ds.products["id"].astype(str))
    users = list(ds.interactions["user_id"].astype(str).value_counts().index[: n * 3])
    out = []
    for i, uid in enumerate(users):
        past = builder.customer_history(uid)
        items = builder.history_items([(pid, ts) for pid, ts, _ in past], uid, max_items=4)
        if len(items) < 2:
            continue
        bought = {pid for pid, _, _ in past}
        rows = products[(i * 7) % len(products):] + products
        # a product of the same category as a past item (a reason to cite) where there is one
        pid = next((p for p in rows if p not in bought
                    and builder.product(p).category == items[i % len(items)].category), None) or next(
            p for p in rows if p not in bought)
        order = [items[i % len(items)]] + [h for h in items if h is not items[i % len(items)]]
        out.append((builder, builder.evidence_record(builder.product(pid), items, uid,
                                                     [{"product_id": h.product_id} for h in order],
                                                     ("warm", "concise", "premium")[i % 3])))
        if len(out) == n:
            break
    return out


def perturbations(name: str, text: str, rec, others: list[str], other_names: list[str]) -> list[tuple[str, str]]:
    """(kind, false text) pairs; each changes the text into one that states something false."""
    v = slot_values(rec)
    out: list[tuple[str, str]] = []
    dates = [(k, v[f"past{k}_date"]) for k in range(1, len(rec.history) + 1) if f"past{k}_date" in v]
    for _, date in dates:
        if date in text:
            other = next((d for _, d in dates if d != date), None)  # purchases of another month, if any
            if other:
                out.append(("date moved to another purchase", text.replace(date, other, 1)))
            year = int(date[-4:])
            out.append(("date in no record", text.replace(date, f"{date[:-4]}{year - 3}", 1)))
            break
    kind, purpose = FOREIGN[name]
    said_kind = v.get("a_kind")
    out.append(("wrong kind", text.replace(said_kind, kind, 1) if said_kind and said_kind in text
                else f"{text} The {rec.product.title} is {kind}."))
    out.append(("another catalog's words", f"{text} {purpose}"))
    out += [("invented popularity", f"{text} {p}") for p in POPULARITY]
    links = [v[f"past{k}_link"] for k in range(1, len(rec.history) + 1) if v.get(f"past{k}_link", "\0") in text]
    if links:
        wrong = next(x for x in LINKS.values() if x != links[0])
        out.append(("wrong relation", text.replace(links[0], wrong, 1)))
        count = re.search(r"by (\d+) (customers|people)", links[0])
        if count:  # the count of customers who had both, off by a few
            out.append(("wrong support", text.replace(count.group(0), f"by {int(count.group(1)) + 4} "
                                                                       f"{count.group(2)}", 1)))
    stars = re.search(r"you gave (\d) star", text)
    if stars:
        out.append(("wrong rating", text.replace(stars.group(0), f"you gave {6 - int(stars.group(1))} star", 1)
                    if stars.group(1) != "3" else text.replace(stars.group(0), "you gave 5 star", 1)))
    verb = next((w for w in ("bought", "rated") if f"you {w}" in text), None)
    if verb:
        out.append(("wrong event verb", text.replace(f"you {verb}", "you rated" if verb == "bought" else
                                                    "you bought", 1)))
    out.append(("invented number", f"{text} It holds 12 of them."))
    price = re.search(r"\$[\d,]+\.\d\d", text)
    if price:
        cents = int(price.group(0).replace("$", "").replace(",", "").replace(".", "")) + 100
        out.append(("wrong price", text.replace(price.group(0), f"${cents // 100:,}.{cents % 100:02d}", 1)))
    pct = re.search(r"(\d+)%", text)
    if pct:
        out.append(("wrong discount", text.replace(pct.group(0), f"{int(pct.group(1)) + 5}%", 1)))
    name_now = v.get("name")
    stranger = next(n for n in other_names if n != name_now)
    out.append(("another customer's name", text.replace(name_now, stranger, 1) if name_now and name_now in text
                else f"Hi {stranger}! {text}"))
    owned = {h.title for h in rec.history} | {rec.product.title} | ({rec.pair.title} if rec.pair else set())
    foreign = next(t for t in others if t not in owned and t not in text)
    out.append(("a purchase that never happened", f"{text} You bought the {foreign}."))
    return [(k, t) for k, t in out if t != text]


@pytest.fixture(scope="module")
def suite(shared_cache):
    from recnarr.data.movielens import load_movielens
    from recnarr.data.superstore import load_superstore

    sets = {"superstore": load_superstore(shared_cache), "movielens": load_movielens(shared_cache),
            "home": home_dataset()}
    names = sorted({n.split()[0] for n in sets["superstore"].users["name"].dropna()})[:50]
    cases = []
    for name, ds in sets.items():
        titles = sorted(ds.products["title"].astype(str))
        for i, (_, rec) in enumerate(true_records(ds, 5 if name == "home" else 16)):
            text = ground(Writer(i).write(rec), rec).text
            cases.append((name, rec, text, perturbations(name, text, rec, titles[i * 13 % len(titles):] + titles,
                                                         names)))
    return cases


def test_every_true_original_is_accepted(suite):
    assert {name for name, *_ in suite} == {"superstore", "movielens", "home"}
    for name, rec, text, _ in suite:
        v = verify(text, rec)
        assert v.ok, (name, text, v.errors)


def test_every_perturbation_is_rejected(suite):
    kinds: Counter = Counter()
    for name, rec, _, perturbed in suite:
        for kind, false in perturbed:
            v = verify(false, rec)
            assert not v.ok, (name, kind, false)
            kinds[kind] += 1
    assert sum(kinds.values()) >= 300, kinds
    assert set(kinds) >= {"date moved to another purchase", "wrong kind", "another catalog's words",
                          "invented popularity", "wrong relation", "wrong event verb", "invented number",
                          "another customer's name", "a purchase that never happened", "wrong price"}


def test_the_same_checks_run_on_a_catalog_the_writer_never_saw():
    """The home shop: unknown prices get no price claim, its own words reach a text only through slots."""
    ds = home_dataset()
    builder = RecordBuilder(ds)
    chair = builder.product("h-106")  # price on request
    rec = builder.record(chair, builder.history_items([("h-101", "2023-02-11")], "c-1"), "c-1", "h-101")
    assert "price" not in slot_values(rec)
    text = ground(Writer(3).write(rec), rec).text
    assert verify(text, rec).ok and "$" not in text
    assert not verify(text + " It costs $0.00.", rec).ok
    # the plate set and the pasta bowls share orders of 3 customers: a supported "bought together" claim
    plates = builder.record(builder.product("h-101"), [], None)
    assert slot_values(plates)["pair_support"] == "3 customers bought it together with"
    assert verify("Meet the Stoneware Dinner Plate Set. 3 customers bought it together with the Stoneware "
                  "Pasta Bowls.", plates).ok
    board = builder.record(builder.product("h-104"), [], None)  # its partner shares a single order
    assert "pair" not in slot_values(board)
