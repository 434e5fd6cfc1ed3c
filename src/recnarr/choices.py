"""The closed choices, listed once: the config's field types, the CLI's `choices=`, the service settings,
the API schema and the UI all take them from here.

`StrEnum` so that a member is its string (`QuantMode.int8 == "int8"`, `f"{mode}"` is "int8", JSON and
paths take it as is) and OmegaConf refuses any other value when a preset or override is loaded. No
imports beyond the standard library: the Streamlit UI imports this without torch.
"""

from __future__ import annotations

from enum import StrEnum


class QuantMode(StrEnum):
    """What the generator serves (recnarr.model.quantize)."""

    none = "none"
    bf16 = "bf16"
    int8 = "int8"
    int4 = "int4"
    nf4 = "nf4"


class Style(StrEnum):
    """A narrative's tone."""

    warm = "warm"
    concise = "concise"
    premium = "premium"


class FinetuneMethod(StrEnum):
    lora = "lora"
    qlora = "qlora"
    full = "full"


class GgufQuant(StrEnum):
    """GGUF weight types: f32 | f16 | q8_0 need only the gguf package; q4_0 | q4_k_m the llamacpp extra."""

    f32 = "f32"
    f16 = "f16"
    q8_0 = "q8_0"
    q4_0 = "q4_0"
    q4_k_m = "q4_k_m"


class Backend(StrEnum):
    """torch: recnarr's GPT (any quantize mode); llamacpp: a GGUF file run by llama.cpp."""

    torch = "torch"
    llamacpp = "llamacpp"


class IndexType(StrEnum):
    """flat: exact inner product; hnsw and ivfpq: approximate (recnarr.retrieval.index)."""

    flat = "flat"
    hnsw = "hnsw"
    ivfpq = "ivfpq"


def values(choice: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in choice)


QUANT_MODES = values(QuantMode)
STYLES = values(Style)
FINETUNE_METHODS = values(FinetuneMethod)
GGUF_QUANTS = values(GgufQuant)
BACKENDS = values(Backend)
INDEX_TYPES = values(IndexType)


def check(choice: type[StrEnum], value: str, what: str, error: type[ValueError] = ValueError) -> str:
    """`value` if it is one of `choice`, else an error that names the field and the allowed values."""
    if value not in values(choice):
        raise error(f"unknown {what} {value!r}: expected one of {', '.join(values(choice))}")
    return value
