"""What a run shared its host with: how many runs trained at once, and which devices it had.

Runs on one machine distort each other's wall-clock, so ``summary.json`` records
``concurrent_runs`` (the most runs training on this host at once while this one trained) and
``devices``. Each training process holds an exclusive ``flock`` on a marker file in a host-wide
folder for as long as it trains; counting the markers whose lock is held counts the runs. A lock
dies with its process, so a killed run can never be counted by mistake, and nothing here is state
that could disagree with the run folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

import torch


def _registry() -> Path:
    """A folder every process of this user on this host sees (/dev/shm when there is one).

    Not ``$TMPDIR``: batch systems often give each job its own, which would hide the others.
    ``OHEM_RUNS_REGISTRY`` names another folder (tests use a private one).
    """
    if os.environ.get("OHEM_RUNS_REGISTRY"):
        return Path(os.environ["OHEM_RUNS_REGISTRY"])
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return base / f"ohemcli-training-{os.getuid()}"


class HostRuns:
    """Marks this process as a training run while entered; counts the runs marked at once."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or _registry()
        self.most = 0
        self._marker: IO[bytes] | None = None
        self._path: Path | None = None

    def __enter__(self) -> HostRuns:
        with contextlib.suppress(OSError):  # a read-only /dev/shm: count nothing, do not fail
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{id(self)}"
            self._marker = open(self.folder / f"{name}.tmp", "wb")  # noqa: SIM115 - held open
            fcntl.flock(self._marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Locked before it gets the name others count: no one can take it for a stale marker.
            os.rename(self._marker.name, self.folder / f"{name}.run")
            self._path = self.folder / f"{name}.run"
        self.sample()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
        if self._marker is not None:
            self._marker.close()
        self._marker = self._path = None

    def count(self) -> int:
        """Markers whose lock is held now (this run's included); removes stale ones."""
        held = 0
        for path in self.folder.glob("*.run"):
            if path == self._path:
                held += 1
                continue
            try:
                with open(path, "rb") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # lock free: its process is gone
            except BlockingIOError:
                held += 1
            except OSError:
                continue
        return held

    def sample(self) -> int:
        """Count now and keep the most seen (at least 1: this run)."""
        self.most = max(self.most, self.count(), 1)
        return self.most


def device_names(device: torch.device, world_size: int = 1) -> list[str]:
    """The devices of a run: ``["cpu (N threads)"]``, or one entry per GPU of its
    ``world_size`` ranks.

    GPU entries name the card and its index as the host numbers it (through
    ``CUDA_VISIBLE_DEVICES``), so two runs that shared a card show the same entry.
    """
    if device.type != "cuda":
        return [f"cpu ({torch.get_num_threads()} threads)"]
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    local = max(1, min(world_size, torch.cuda.device_count()))
    names = []
    for k in range(local):
        host_id = visible[k] if k < len(visible) else str(k)
        names.append(f"{torch.cuda.get_device_name(k)} (GPU {host_id})")
    return names
