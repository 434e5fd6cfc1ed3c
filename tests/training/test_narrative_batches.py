"""Fine-tuning batches: loss only on the narrative, history cut from the left, resumable, fixed validation."""

from __future__ import annotations

import pytest
import torch

from recnarr.data.tokenizer import get_tokenizer
from recnarr.training.narrative_batches import EOT_ID, IGNORE, NarrativeBatches, collate, tokenize_example

from .narrative_fixtures import make_examples


@pytest.fixture(scope="module")
def tok(shared_cache):
    return get_tokenizer(shared_cache)


def test_mask_covers_exactly_the_target_and_its_end(tok):
    ex = make_examples(1)[0]
    t = tokenize_example(ex["prompt"], ex["target"], tok, 512)
    assert t.prompt == tok.encode(ex["prompt"])  # what the engine will be fed at inference
    b = collate([t])
    assert torch.equal(b.x[0, 1:], b.y[0, :-1])  # y is x shifted by one
    counted = b.y[0][b.loss_mask[0] > 0].tolist()
    assert counted == tok.encode(ex["target"]) + [EOT_ID]
    assert tok.decode(b.x[0, : len(t.prompt)].tolist()) == ex["prompt"]
    assert b.loss_mask[0, : len(t.prompt) - 1].sum() == 0  # no prompt token counts


def test_padding_never_counts(tok):
    rows = [tokenize_example(e["prompt"], e["target"], tok, 512) for e in make_examples(4)]
    b = collate(rows)
    lengths = [len(r.tokens) - 1 for r in rows]
    assert b.x.shape == (4, max(lengths))
    for i, n in enumerate(lengths):
        assert (b.y[i, n:] == IGNORE).all() and (b.loss_mask[i, n:] == 0).all()
        assert b.loss_mask[i].sum() == len(rows[i].target)


def test_long_prompt_loses_oldest_history_lines_never_the_target(tok):
    ex = next(e for e in make_examples(30) if e["prompt"].count("\n[") >= 3)
    full = tokenize_example(ex["prompt"], ex["target"], tok, 4096)
    n_full = len(full.tokens)
    cut = tokenize_example(ex["prompt"], ex["target"], tok, n_full - 3)  # must drop one history line
    assert cut is not None and cut.dropped_history >= 1
    assert cut.target == full.target and len(cut.tokens) <= n_full - 2
    text = tok.decode(cut.prompt)
    assert not any(line.startswith("[1]") for line in text.splitlines())
    assert "### product:" in text and text.endswith("### narrative:\n")
    history = [line for line in ex["prompt"].splitlines() if line.startswith("[")]
    assert history[-1] in text  # the most recent purchase stays
    assert tokenize_example(ex["prompt"], ex["target"], tok, len(full.target) + 5) is None  # cannot fit at all


def test_too_long_examples_are_counted_not_cut(tok):
    exs = make_examples(6)
    # the shortest an example can get: no history lines at all
    shortest = sorted(len(tokenize_example(e["prompt"], e["target"], tok, 4096).tokens)
                      - sum(len(tok.encode(line + "\n")) for line in e["prompt"].splitlines() if line.startswith("["))
                      for e in exs)
    nb = NarrativeBatches(exs, exs, tok, block_size=shortest[2] - 1, batch_size=2)
    assert nb.skipped["train"] + len(nb.train) == 6 and nb.skipped["train"] > 0 and len(nb.train) >= 3
    assert all(len(t.tokens) <= shortest[2] for t in nb.train)
    with pytest.raises(ValueError, match="no training example fits"):
        NarrativeBatches(exs, None, tok, block_size=20, batch_size=2)


def test_deterministic_resumable_and_epochs(tok):
    exs = make_examples(10)
    a = NarrativeBatches(exs, exs[:5], tok, 512, batch_size=4, seed=3)
    seq = [a.train_batch().x for _ in range(3)]  # 12 rows: crosses into the second epoch
    assert a.epoch == 1
    b = NarrativeBatches(exs, exs[:5], tok, 512, batch_size=4, seed=3)
    b.train_batch()
    state = b.state_dict()
    c = NarrativeBatches(exs, exs[:5], tok, 512, batch_size=4, seed=3)
    c.load_state_dict(state)
    assert all(torch.equal(x, c.train_batch().x) for x in seq[1:])
    # every example once per epoch
    d = NarrativeBatches(exs, None, tok, 512, batch_size=1, seed=3)
    firsts = [d.train_batch().x[0, :40].tolist() for _ in range(10)]
    assert len({tuple(f) for f in firsts}) == len({tuple(t.tokens[:40]) for t in d.train})
    with pytest.raises(ValueError, match="resume"):
        NarrativeBatches(exs[:9], None, tok, 512, batch_size=4).load_state_dict(state)


def test_validation_batches_are_fixed(tok):
    exs = make_examples(10)
    nb = NarrativeBatches(exs, exs, tok, 512, batch_size=4, val_batches=2)
    v1, v2 = list(nb.val_batches()), list(nb.val_batches())
    assert len(v1) == 2 and all(torch.equal(p.x, q.x) and torch.equal(p.loss_mask, q.loss_mask)
                                for p, q in zip(v1, v2, strict=True))
    nb.train_batch()
    assert torch.equal(next(iter(nb.val_batches())).x, v1[0].x)


def test_ranks_take_disjoint_examples(tok):
    exs = make_examples(8)
    r0 = NarrativeBatches(exs, None, tok, 512, batch_size=4, rank=0, world_size=2)
    r1 = NarrativeBatches(exs, None, tok, 512, batch_size=4, rank=1, world_size=2)
    assert set(r0._order).isdisjoint(r1._order) and len(r0._order) + len(r1._order) == 8
