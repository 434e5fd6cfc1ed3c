"""Generated narratives checked by the verifier: the pass rate that fine-tuning and quantization report.

The model writes a narrative for each of a few validation prompts (greedy, through the engine, as
served), and `inference.grounding.ground` fills its slots and verifies every fact. A narrative passes
when the verifier finds no error; an empty one fails.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from recnarr.data.narratives import NarrativeRecord
from recnarr.data.tokenizer import EOT_ID
from recnarr.inference.engine import Engine, SamplingParams
from recnarr.inference.grounding import ground


def grounding_pass_rate(model: torch.nn.Module, examples: Sequence[dict], tokenizer: Any,
                        n: int = 16, max_new_tokens: int = 160) -> dict[str, Any]:
    """Greedy narratives for the first `n` examples whose prompt fits the context; the share that pass
    `ground`. Returns counts, the rate, a few failures' first errors, and the mean generated length."""
    engine = Engine(model, tokenizer)
    block = model.config.block_size
    passed = tried = tokens = 0
    failures: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for ex in examples:
        if tried >= n:
            break
        prompt = tokenizer.encode(ex["prompt"])
        budget = min(max_new_tokens, block - len(prompt))
        if budget < 16:
            continue  # the prompt leaves no room for a narrative in this context
        gen = engine.generate(prompt, SamplingParams(max_new_tokens=budget, temperature=0, stop_token_ids=(EOT_ID,)))
        tried += 1
        tokens += len(gen.tokens)
        check = ground(gen.text.strip(), NarrativeRecord.from_json(ex["record"]))
        ok = check.ok and bool(gen.text.strip())
        passed += ok
        if not ok and len(failures) < 3:
            failures.append({"text": gen.text.strip()[:300], "errors": (check.errors or ["empty narrative"])[:3]})
    return {"passed": passed, "tried": tried, "pass_rate": passed / tried if tried else None,
            "mean_new_tokens": tokens / tried if tried else None, "seconds": time.perf_counter() - t0,
            "failures": failures}
