"""Cells of notebooks/07_evaluation.ipynb (see _build.py)."""

from _build import SETUP

CELLS = [
("md", "# 07 · Evaluation and quality assessment (incl. fairness)\n\nQuality is measured on held-out users and products: grounding (is every stated fact true?), personalization (does it cite the user's real purchases, and only theirs?), diversity, and BLEU/ROUGE against the writer's references; then bias and fairness checks. Every metric is a plain function in `recnarr.evaluation` with a hand-checkable definition."),
("code", SETUP),
("code", '''from recnarr.data.examples import load_examples
from recnarr.data.narratives import NarrativeRecord, Writer
from recnarr.data.run_data import load_dataset
from recnarr.evaluation import metrics
from recnarr.evaluation.audit import Auditor
from recnarr.inference.grounding import ground, verify
ds = load_dataset(cfg)
auditor = Auditor(ds)  # independent of the verifier: checks claims against the raw tables
test = load_examples(cfg.layout.narratives, "test")
recs = [NarrativeRecord.from_json(e["record"]) for e in test]
refs = [ground(e["target"], r).text for e, r in zip(test, recs)]
# a second draw of the writer, scored against the references: the ceiling a model trained on it can reach
hyps = [ground(Writer(seed=99 + i).write(r), r).text for i, r in enumerate(recs)]
print(len(recs), "held-out examples (unseen users, held-out products)")'''),
("code", '''import pandas as pd
rouge = metrics.rouge(hyps, refs)
pd.Series({
    "distinct-1": metrics.distinct_n(hyps, 1), "distinct-2": metrics.distinct_n(hyps, 2),
    "unique ratio": metrics.unique_ratio(hyps), "FMR": metrics.fmr(hyps, [r.product for r in recs]),
    "FCR": metrics.fcr(hyps, [r.product for r in recs]), "BLEU": metrics.bleu(hyps, refs),
    **{k: v for k, v in rouge.items()},
}).round(3)'''),
("md", "## Grounding catches hallucinations, and the audit confirms it independently\nA narrative with a wrong price, a purchase the user never made, or invented popularity is rejected by the verifier; the audit (separate code, raw tables) finds the same false claims."),
("code", '''r, text = recs[0], refs[0]
wrong_price = text + " Today only $0.99."
other_title = ds.products["title"][~ds.products["title"].isin([r.product.title] + [h.title for h in r.history])].iloc[0]
never_bought = text + f" You bought the {other_title}."
popular = text + " Customers often add it."
for name, t in [("reference", text), ("wrong price", wrong_price), ("never bought", never_bought), ("popularity", popular)]:
    v = verify(t, r)
    audit = auditor.audit(t, r.product.id, r.user_id)
    print(f"{name:<13} verifier ok={v.ok} {v.errors[:1]} | audit: {[c.kind for c in audit]}")'''),
("md", "## Exposure and fairness metrics on hand-made cases"),
("code", '''print("Gini of uniform exposure:", metrics.gini_index([5, 5, 5]))
print("Gini of one item taking all:", round(metrics.gini_index([15, 0, 0]), 3))
print("Jaccard@3 of identical lists:", metrics.jaccard_at_k(["a", "b", "c"], ["a", "b", "c"], 3))
print("tone scores:", metrics.tone_scores("We think you'll love this wonderful chair. Dear Claire, allow us to suggest it."))'''),
("md", "## The full evaluation stages\n`recnarr evaluate narratives`, `recnarr evaluate fairness` and `recnarr report` write `eval/` and `report/` in the run folder, with every baseline in one table (missing ones shown as *not run* with the command that produces them)."),
("code", '''from recnarr.stages.evaluate import evaluate_narratives
result = evaluate_narratives(cfg, only=["writer"])'''),
("code", '''from recnarr.stages.report import report
path = report(cfg)
print(path)'''),
]
