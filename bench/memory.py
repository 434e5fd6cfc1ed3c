"""Peak resident memory of a benchmark process, shared by the bench scripts (imported as `memory`:
each script runs as `python bench/<name>.py`, so this folder is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path


def peak_rss_mb(pid: int | None = None) -> float:
    """A process's peak resident memory (this one by default). VmHWM, not getrusage's ru_maxrss: that one
    survives exec and would report the parent's peak for a freshly started worker."""
    status = Path(f"/proc/{pid or os.getpid()}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is
    return float("nan")


def reset_peak_rss() -> None:
    """Start VmHWM again from the current size (Linux), e.g. after a conversion step that is not the
    figure being measured; elsewhere a no-op."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
