"""The GPT-2 tokenizer (tiktoken), built offline from registry files.

`tiktoken.get_encoding("gpt2")` downloads its vocabulary at run time, which fails offline. The
same ranks ship in the `openai-whisper` source archive (sha256 pinned in `sources.py`), so we
build the encoding from that file with tiktoken's r50k split pattern.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from recnarr.data import sources

EOT = "<|endoftext|>"
EOT_ID = 50256
# sha256 of gpt2.tiktoken; the same hash tiktoken records for r50k_base
VOCAB_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# tiktoken's r50k_base / gpt2 pre-tokenizer pattern
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def vocab_file(cache: Path) -> Path:
    folder = sources.fetch("gpt2-vocab", cache)
    (path,) = sources.find(folder, "gpt2.tiktoken")
    return path


@lru_cache(maxsize=4)
def _encoding(path: str) -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(path, expected_hash=VOCAB_SHA256)
    if len(ranks) != EOT_ID:
        raise ValueError(f"{path}: expected {EOT_ID} BPE ranks, found {len(ranks)}")
    return tiktoken.Encoding(
        name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: EOT_ID}
    )


def get_tokenizer(cache: Path | None = None) -> tiktoken.Encoding:
    """GPT-2 BPE (50,257 ids, `<|endoftext|>` = 50256), with no network access beyond the registry."""
    from recnarr.config import cache_dir

    return _encoding(str(vocab_file(Path(cache) if cache else cache_dir())))


@lru_cache(maxsize=1)
def _byte_symbols() -> tuple[str, ...]:
    """GPT-2's byte -> printable character table (`bytes_to_unicode` in openai/gpt-2's encoder.py).

    Byte-level BPE files (vocab.json, merges.txt, GGUF token lists) spell each byte as one printable
    character: printable Latin-1 bytes stand for themselves, the other 68 map to U+0100 onwards.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def _spell(token: bytes) -> str:
    symbols = _byte_symbols()
    return "".join(symbols[b] for b in token)


def _split_in_two(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """Replay BPE on `token` with only the merges ranked below it: what is left is the last merge's pair."""
    parts = [bytes([b]) for b in token]
    limit = ranks[token]
    while len(parts) > 2:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], limit))
        if ranks.get(parts[best] + parts[best + 1], limit) >= limit:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not the merge of two lower-ranked tokens")
    return parts[0], parts[1]


@lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[list[str], list[str]]:
    """The tokenizer as byte-level BPE files hold it: token strings by id, and merges ("a b") by rank.

    tiktoken keeps only ranks; the merges are recovered by replaying BPE on each token (ranks are merge
    order), which reproduces GPT-2's merges.txt (a few seconds, once per process). Used by the HF and
    GGUF exports so both are self-contained.
    """
    enc = get_tokenizer()
    ranks = {enc.decode_single_token_bytes(i): i for i in range(enc.n_vocab) if i != enc.eot_token}
    tokens = [_spell(enc.decode_single_token_bytes(i)) if i != enc.eot_token else EOT for i in range(enc.n_vocab)]
    merges = [" ".join(map(_spell, _split_in_two(tok, ranks)))
              for tok, _ in sorted(ranks.items(), key=lambda kv: kv[1]) if len(tok) > 1]
    return tokens, merges
