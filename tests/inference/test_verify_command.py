"""`recnarr verify FILE.jsonl`: any copy checked against the run's catalog and each customer's real records,
one JSON answer a line, through the CLI on a real run folder (the home-shop fixture loaded by the column map)."""

from __future__ import annotations

import json
from pathlib import Path

from recnarr.cli import main

HOME = Path(__file__).parent / "fixtures" / "home"


def run_args(tmp_path: Path) -> list[str]:
    return ["--preset", "tiny", f"run_dir={tmp_path / 'run'}", "data.dataset=custom",
            f"data.catalog={HOME / 'products.csv'}", f"data.interactions={HOME / 'orders.jsonl'}",
            f"data.users={HOME / 'customers.jsonl'}", f"data.column_map={HOME / 'columns.yaml'}", "data.min_history=1"]


def test_verify_checks_each_line_against_the_records(tmp_path, capsys):
    lines = [
        # true: Maya bought the plates and bowls in February 2023, the throw in September 2023
        {"user_id": "c-1", "product_id": "h-104", "text": "Hi Maya! Meet the Walnut Serving Board. You bought the "
         "Wool Throw Blanket in September 2023. It's $58.00, now 25% off at $43.50."},
        # a wrong month for that purchase
        {"user_id": "c-1", "product_id": "h-104", "text": "Meet the Walnut Serving Board. You bought the Wool Throw "
         "Blanket in February 2023."},
        # invented popularity
        {"user_id": "c-1", "product_id": "h-104", "text": "The Walnut Serving Board is best-selling."},
        # an anonymous basket, given as a history: rated, not bought
        {"history": [{"product_id": "h-107", "date": "2023-09-03", "event": "rating"}], "product_id": "h-104",
         "text": "Meet the Walnut Serving Board. You rated the Wool Throw Blanket in September 2023."},
        {"history": [{"product_id": "h-107", "date": "2023-09-03", "event": "rating"}], "product_id": "h-104",
         "text": "Meet the Walnut Serving Board. You bought the Wool Throw Blanket in September 2023."},
        {"user_id": "nobody", "product_id": "h-104", "text": "Meet the Walnut Serving Board."},
    ]
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n\n")
    assert main(["verify", str(path), *run_args(tmp_path)]) == 1  # not every text passes
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [o["ok"] for o in out] == [True, False, False, True, False, False, False]
    assert {c["fact"] for c in out[0]["citations"]} >= {"name", "product", "past3", "past3_date", "price"}
    assert any("{past1_date} (date) is not in the same clause as {past1}" in e for e in out[1]["errors"])
    assert any("'best-selling'" in e for e in out[2]["errors"])
    assert any("'bought'" in e for e in out[4]["errors"])
    assert out[5]["errors"] == ["line 6: unknown user id 'nobody'"]
    assert out[6]["errors"][0].startswith("line 7: not JSON")


def test_verify_passes_when_every_text_is_true(tmp_path, capsys):
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"user_id": "c-5", "product_id": "h-108", "text": "Take a look at the Ceramic Table "
                                "Lamp. In the catalog's words: \"Glazed ceramic base with a linen drum shade\". You "
                                "bought the Linen Napkins in April 2024."}))
    assert main(["verify", str(path), *run_args(tmp_path)]) == 0
    answer = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert answer["ok"] is True and "fact" in {c["fact"] for c in answer["citations"]}
    # "a change of pace" holds of any two products: no reason, and not a word the verifier takes
    path.write_text(json.dumps({"user_id": "c-5", "product_id": "h-108", "text": "Take a look at the Ceramic Table "
                                "Lamp. It is a change of pace from the Linen Napkins you bought in April 2024."}))
    assert main(["verify", str(path), *run_args(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "missing.jsonl"), *run_args(tmp_path)]) == 1
    assert "no such file" in capsys.readouterr().err
