"""Where the kit keeps its files, which device it uses, and whether it runs interactively.

Every location can be moved with an environment variable so that a workshop room,
a CI runner or a cluster can share one cache:

- ``DECOYLAB_DATA``  datasets (default ``~/.cache/decoylab/data``)
- ``DECOYLAB_CACHE`` trained weights and adversarial sets (default ``~/.cache/decoylab/cache``)
- ``DECOYLAB_BATCH`` set to 1 by the runner: quiet logs, no progress bars, no widgets
- ``DECOYLAB_DEVICE`` force ``cpu`` or ``cuda`` (default: CUDA when present)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is asked for: planning a run needs only the paths
    import torch


def _home_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "decoylab"


def data_root() -> Path:
    return Path(os.environ.get("DECOYLAB_DATA", _home_cache() / "data")).expanduser()


def cache_root() -> Path:
    return Path(os.environ.get("DECOYLAB_CACHE", _home_cache() / "cache")).expanduser()


def is_batch() -> bool:
    """True inside a headless run (papermill through ``decoylab run``)."""
    return os.environ.get("DECOYLAB_BATCH", "") not in ("", "0")


DEVICES = ("auto", "cpu", "cuda")


def device(choice: str | None = None) -> torch.device:
    """The torch device to use: ``choice`` or ``$DECOYLAB_DEVICE``, ``auto`` = CUDA when present."""
    import torch

    choice = choice or os.environ.get("DECOYLAB_DEVICE", "auto")
    if choice not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {choice!r}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return torch.device(choice)


# Batch sizes for inference and attacks when the caller gives none. On CPU small batches win: their
# activations stay in the caches (2-core machine, ``python -m decoylab.tools.bench batches``: the kit's MNIST
# nets run 1.3-2x faster per image at 128 than at 1024, forward and forward+backward alike, and within about
# 10 % of the best size measured for each).
# On a GPU large batches keep the device busy.
CPU_BATCH = 128
GPU_BATCH = 1024


def batch_size(device_: torch.device | str | None = None) -> int:
    """The default batch for ``device_`` (a torch device, "cpu"/"cuda", or None for ``device()``)."""
    import torch

    kind = torch.device(device_).type if device_ is not None else device().type
    return CPU_BATCH if kind == "cpu" else GPU_BATCH
