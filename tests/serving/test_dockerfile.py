"""docker/Dockerfile cannot be built here (no Docker engine): lint it instead. Multi-stage, CPU torch at
the project's pin, non-root, a HEALTHCHECK on /healthz, every file it copies present, and its command a
real CLI command."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from serving_helpers import ROOT

from recnarr.cli import build_parser

DOCKERFILE = ROOT / "docker" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "dangling line continuation at the end"
    return out


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)


def stages(steps):
    current, found = None, {}
    for ins, args in steps:
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            current = m.group(2) or f"stage{len(found)}"
            found[current] = []
        elif current is not None:
            found[current].append((ins, args))
    return found


def build_args(steps) -> dict[str, str]:
    return {a.split("=", 1)[0]: a.split("=", 1)[1] for ins, a in steps if ins == "ARG" and "=" in a}


def test_known_instructions_and_multi_stage(steps):
    known = {"FROM", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "ENTRYPOINT",
             "LABEL"}
    assert {ins for ins, _ in steps} <= known
    s = stages(steps)
    assert len(s) >= 2 and list(s)[-1] == "runtime"
    assert any("--from=build" in a for ins, a in s["runtime"] if ins == "COPY")


def test_cpu_torch_at_the_project_pin(steps):
    pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("torch=="))
    runs = " ".join(a for ins, a in steps if ins == "RUN")
    assert f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu" in runs
    # torch goes in before the project, so pip never resolves torch from the default (CUDA) index
    assert runs.index(pin) < runs.index("pip install -e \".")


def test_non_root_and_healthcheck(steps):
    runtime = stages(steps)["runtime"]
    users = [a for ins, a in runtime if ins == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [ins for ins, _ in runtime].index("USER") < [ins for ins, _ in runtime].index("CMD")
    health = [a for ins, a in runtime if ins == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and ":8000" in health[0]
    assert "8000" in " ".join(a for ins, a in runtime if ins == "EXPOSE")


def test_copied_files_exist(steps):
    args = build_args(steps)
    ignored = [ln.strip() for ln in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for ins, a in steps:
        if ins != "COPY" or "--from=" in a:
            continue
        parts = [p for p in shlex.split(a) if not p.startswith("--")]
        for src in parts[:-1]:
            src = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], src)
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert src not in ignored and src.split("/")[0] not in ignored, f"COPY {src} is dockerignored"


def test_command_is_the_cli_serve(steps):
    cmd = [a for ins, a in steps if ins == "CMD"][-1]
    inner = json.loads(cmd)[-1]  # exec form, a JSON array: ["sh", "-c", "exec recnarr serve ..."]
    argv = shlex.split(inner.replace('"$RECNARR_PRESET"', "inference").replace('"$RECNARR_RUN_DIR"', "/data/run"))
    assert argv[:3] == ["exec", "recnarr", "serve"]
    ns = build_parser().parse_args(argv[2:])
    assert ns.host == "0.0.0.0" and ns.port == 8000 and ns.overrides == ["run_dir=/data/run"]
    env = " ".join(a for ins, a in steps if ins == "ENV")
    assert "RECNARR_PRESET" in env and "RECNARR_RUN_DIR=/data/run" in env
    data_fetch = next(a for ins, a in steps if ins == "RUN" and "recnarr data fetch" in a)
    only = data_fetch.split("--only", 1)[1].split("&&")[0].split()
    build_parser().parse_args(["data", "fetch", "--only", *only])
    from recnarr.data.sources import SOURCES

    assert set(only) <= set(SOURCES)


def test_the_image_cannot_start_open_to_the_network(steps, monkeypatch, capsys):
    """The image's command binds 0.0.0.0: with no RECNARR_API_KEY it is refused before anything loads,
    naming the fix; RECNARR_ALLOW_ANONYMOUS=1 is the explicit way to open it."""
    from recnarr.cli import main
    from recnarr.serving.settings import InsecureBind, Settings

    cmd = json.loads([a for ins, a in steps if ins == "CMD"][-1])[-1]
    argv = shlex.split(cmd.replace('"$RECNARR_PRESET"', "tiny").replace('"$RECNARR_RUN_DIR"', "/nonexistent/run"))
    for key in [k for k in os.environ if k.startswith("RECNARR_") and k != "RECNARR_CACHE"]:
        monkeypatch.delenv(key)
    assert main(argv[2:]) == 1
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without an API key" in err and "RECNARR_API_KEY" in err
    assert "RECNARR_ALLOW_ANONYMOUS=1" in err
    with pytest.raises(InsecureBind):
        Settings().check_bind("::")
    Settings().check_bind("127.0.0.1")  # loopback stays open
    Settings().check_bind("localhost")
    Settings(api_key="k").check_bind("0.0.0.0")
    Settings(allow_anonymous=True).check_bind("0.0.0.0")  # opened on purpose (it warns)
