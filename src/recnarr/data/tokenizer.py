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
