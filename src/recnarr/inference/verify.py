"""Checking any copy against the catalog and the customer's records (`recnarr verify`, recnarr.stages.verify).

Each input line is `{"user_id": ..., "product_id": ..., "text": ...}` (a customer of the run's
dataset: their whole history may be cited), or `{"history": [{"product_id", "date", "event"}], ...}`
instead of a user id (an anonymous basket). Each output line is `{"ok": true|false, "errors": [...],
"citations": [...]}`, in input order; a malformed line is answered with its line number and never stops
the rest. The check is `inference.grounding.verify`, the very call the generator makes before it shows
a narrative, so a human's copy, another model's and ours are held to one standard. Exit status 0 when
every text passes, 1 otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, TextIO

from recnarr.inference.grounding import verify
from recnarr.inference.records import RecordBuilder


def check_line(builder: RecordBuilder, line: str, number: int) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        return {"ok": False, "errors": [f"line {number}: not JSON ({e.msg} at column {e.colno})"]}
    if not isinstance(item, dict):
        return {"ok": False, "errors": [f"line {number}: expected a JSON object"]}
    missing = [k for k in ("product_id", "text") if k not in item]
    if missing:
        return {"ok": False, "errors": [f"line {number}: missing {', '.join(missing)}"]}
    if not isinstance(item["text"], str):
        return {"ok": False, "errors": [f"line {number}: text must be a string"]}
    history = item.get("history")
    if history is not None and (not isinstance(history, list) or
                                not all(isinstance(h, dict) and "product_id" in h for h in history)):
        return {"ok": False, "errors": [f"line {number}: history must be a list of {{\"product_id\", \"date\", "
                                        f"\"event\"}} objects"]}
    try:
        rec = builder.for_check(str(item["product_id"]), item.get("user_id"), history)
    except KeyError as e:
        return {"ok": False, "errors": [f"line {number}: {e.args[0]}"]}
    v = verify(item["text"], rec)
    return {"ok": v.ok, "errors": v.errors, "citations": [asdict(c) for c in v.citations]}


def verify_stream(builder: RecordBuilder, lines: TextIO, out: TextIO) -> tuple[int, int]:
    """Check every line of `lines`, one JSON answer per non-blank line to `out`; (passed, checked)."""
    passed = checked = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        answer = check_line(builder, line, number)
        out.write(json.dumps(answer) + "\n")
        checked += 1
        passed += answer["ok"]
    return passed, checked
