"""`evaluate narratives` and `report` end to end on a tiny run made in the test (random-init GPTs)."""

from __future__ import annotations

import json

from recnarr.data.examples import load_examples
from recnarr.data.narratives import NarrativeRecord
from recnarr.evaluation.narratives import find_systems
from recnarr.evaluation.report import md_to_html
from recnarr.stages.evaluate import evaluate_narratives
from recnarr.stages.report import report

from . import eval_fixtures as fx


def test_missing_baselines_show_as_not_run_with_their_command(tmp_path):
    cfg = fx.write_run(tmp_path, checkpoints=False)
    systems = {s.key: s for s in find_systems(cfg)}
    assert list(systems) == ["writer", "finetuned", "pretrained", "scratch", "no-rag", "int8", "gguf-q8_0"]
    assert systems["writer"].status == "ok"
    for key in ("finetuned", "pretrained", "scratch", "no-rag", "int8", "gguf-q8_0"):
        assert systems[key].status == "not run" and "recnarr " in systems[key].note
    assert "--from-scratch" in systems["scratch"].note and "quantize --modes int8" in systems["int8"].note
    assert "export --format gguf" in systems["gguf-q8_0"].note


def test_evaluate_narratives_and_the_report_from_a_tiny_run(tmp_path, shared_cache):
    import importlib.util

    from recnarr.model.gguf_export import export_gguf

    cfg = fx.write_run(tmp_path)
    finetuned = {s.key: s for s in find_systems(cfg)}["finetuned"]
    export_gguf(finetuned.load(), tmp_path / "export" / "gguf", "q8_0")
    res = evaluate_narratives(cfg)
    s = res["systems"]
    g = s["gguf-q8_0"]
    if importlib.util.find_spec("llama_cpp"):  # the same generator and verifier over llama.cpp
        assert g["status"] == "ok" and g["metrics"]["hallucination_rate"] == 0.0 and g["metrics"]["n"] == 3
        assert g["metrics"]["perplexity"] is None and g["metrics"]["decode_tok_s"] > 0
    else:
        assert g["status"] == "not run" and "llamacpp" in g["note"]
    assert [s[k]["status"] for k in ("writer", "finetuned", "pretrained", "no-rag")] == ["ok"] * 4
    assert s["scratch"]["status"] == "not run" and s["int8"]["status"] == "not run"
    w, ft = s["writer"]["metrics"], s["finetuned"]["metrics"]
    # the writer states only true facts; its references are another draw of itself
    assert w["hallucination_rate"] == 0.0 and w["fact_precision"] == 1.0
    # personal where a past item has a link a record backs (an unlinked one is no reason): some here
    tested = [NarrativeRecord.from_json(e["record"]) for e in load_examples(cfg.layout.narratives, "test")]
    assert any(r.history and r.history[0].link for r in tested) and w["personal_rate"] > 0
    assert 0 < w["bleu"] <= 100 and w["swap_rate"] == 0.0
    # a random-init model: whatever it wrote first, what users see passed the verifier (or is the fallback)
    assert ft["hallucination_rate"] == 0.0 and ft["n"] == 3 and ft["perplexity"] > 1000
    assert ft["prefill_tok_s"] > 0 and len(s["finetuned"]["latencies"]) == 3
    assert s["finetuned"]["samples"][0]["citations"]
    saved = json.loads((tmp_path / "eval" / "narratives.json").read_text())
    assert set(saved["systems"]) == set(s)
    md = (tmp_path / "eval" / "narratives.md").read_text()
    assert "| fine-tuned from random init | not run |" in md

    # fairness left out on purpose: the report says what is missing
    out = report(cfg)
    page = (out / "index.html").read_text()
    assert (out / "report.md").is_file()
    for name in ("losses.png", "grounding.png", "quality.png", "latency.png"):
        assert (out / "plots" / name).stat().st_size > 1000, name
    assert "Missing artifacts" in page and "recnarr evaluate fairness" in page
    assert "recnarr evaluate retrieval" in page and "quantize" in page
    assert "Example narratives" in page and "Ann Archer" in page


def test_report_of_an_empty_run_lists_everything_as_missing(tmp_path):
    from recnarr.config import load_config

    cfg = load_config("tiny", [f"run_dir={tmp_path}", "eval.tracking=false"])
    page = (report(cfg) / "index.html").read_text()
    for artifact in ("training checkpoints", "eval/narratives.json", "eval/fairness.json", "eval/retrieval.json"):
        assert artifact in page


def test_md_to_html_tables_fences_and_failures():
    html = md_to_html("## T\n\n| a | b |\n|---|---|\n| x | **FAIL** |\n\n```\nraw <text>\n```\nplain `code`")
    assert "<h3>T</h3>" in html and '<tr class="fail">' in html and "<b>FAIL</b>" in html
    assert "<pre>raw &lt;text&gt;</pre>" in html and "<code>code</code>" in html
