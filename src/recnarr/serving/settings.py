"""Service settings, from `RECNARR_*` environment variables (pydantic-settings), validated at start-up.

    RECNARR_PRESET=inference RECNARR_RUN_DIR=runs/cpu-small RECNARR_QUANTIZE=int8 recnarr serve

List values (`RECNARR_CORS_ORIGINS`, `RECNARR_OVERRIDES`) take a JSON list or a comma-separated string.
`RECNARR_GENERATOR_FACTORY=module:function` builds the generator by calling that function with the
settings instead of loading a run (tests and benchmarks use it to serve a tiny random model).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recnarr import choices
from recnarr.choices import QuantMode

log = logging.getLogger("recnarr.serving")


class InsecureBind(ValueError):
    """A bind beyond loopback with no API key: customers' names and histories would be open to anyone."""


def is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            return json.loads(s)
        return [part.strip() for part in s.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECNARR_", extra="ignore", validate_default=True)

    # what to load
    preset: str = "inference"  # configs/<preset>.yaml or a YAML path
    run_dir: str | None = None  # artifact folders (data, index, serving); default: the preset's run_dir
    overrides: Annotated[list[str], NoDecode] = Field(default_factory=list)  # extra config key=value pairs
    checkpoint: str | None = None  # model folder; default: what load_generator picks for the run
    quantize: str | None = None  # none | bf16 | int8 | int4 | nf4; default: the preset's quantize.mode
    generator_factory: str | None = None  # "module:function"(settings) -> NarrativeGenerator, instead of a run

    # access: secure by default. A bind beyond loopback needs an API key, or an explicit opt-out
    api_key: SecretStr | None = None  # when set, /v1/* needs the header X-API-Key: <key>
    allow_anonymous: bool = False  # RECNARR_ALLOW_ANONYMOUS=1: serve /v1/* to the network without a key
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # browser origins allowed

    # load and limits
    max_queue: int = Field(16, ge=1, le=1024)  # generation requests waiting behind the running one
    request_timeout_s: float = Field(120.0, gt=0, le=3600)  # queue wait + generation, per request
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_batch: int = Field(16, ge=1, le=64)  # narratives decoded together (continuous batching)
    # intra-op threads of the model worker. Default: every core but one (at least 1). The event loop,
    # HTTP parsing and tokenization need a core too; when they preempt one of torch's threads, the
    # others spin at the next barrier, and a contended 2-thread generation ran 5-10x slower than a
    # 1-thread one on 2 cores. One free core keeps the model's threads uncontended.
    torch_threads: int | None = Field(None, ge=1, le=256)

    def model_threads(self) -> int:
        import os

        return self.torch_threads or max(1, (os.cpu_count() or 2) - 1)

    docs: bool = True  # serve /docs, /redoc and /openapi.json
    log_level: str = "info"

    @field_validator("overrides", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("quantize")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        return None if value is None else choices.check(QuantMode, value, "quantize mode")

    @field_validator("generator_factory")
    @classmethod
    def _factory(cls, value: str | None) -> str | None:
        if value is not None and value.count(":") != 1:
            raise ValueError(f"generator_factory must be 'module:function', got {value!r}")
        return value

    def check_bind(self, host: str) -> None:
        """Refuse to serve the network without a key (InsecureBind), unless allow_anonymous says so (then
        warn). Loopback binds stay open: only this machine can reach them."""
        if is_loopback(host) or self.api_key is not None:
            return
        if not self.allow_anonymous:
            raise InsecureBind(
                f"refusing to listen on {host} without an API key: /v1/users and /v1/users/{{id}}/history would "
                "hand every customer's name and purchases to anyone who can reach this port. Set RECNARR_API_KEY "
                "(clients then send X-API-Key), bind 127.0.0.1, or set RECNARR_ALLOW_ANONYMOUS=1 to serve "
                "without a key on purpose")
        log.warning("RECNARR_ALLOW_ANONYMOUS=1: serving %s with no API key; anyone who reaches this port can "
                    "read every customer's name and purchase history", host)

    def config_overrides(self) -> list[str]:
        """The RunConfig overrides these settings imply (run_dir first, then the explicit ones)."""
        return ([f"run_dir={self.run_dir}"] if self.run_dir else []) + list(self.overrides)
