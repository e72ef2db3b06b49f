"""Fan a notebook's sweep out over the Ray cluster its run uses (``decoylab run --executor ray``), or
run it in place otherwise."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

class RayMissing(ImportError):
    """Ray was asked for but is not installed."""


RAY_HINT = "Ray is not installed: pip install 'ray>=2.9' (or pip install -e '.[test]', which includes it)"


def init_ray(address: str | None):
    """Connect to (or start) Ray once per process."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return ray


def import_ray():
    """The ``ray`` module, or ``RayMissing`` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise RayMissing(RAY_HINT) from err
    return ray


def map_points(fn: Callable[[Any], Any], points: Iterable[Any]) -> list[Any]:
    """``[fn(p) for p in points]``, fanned out over the Ray cluster the run uses (one task per point,
    one GPU each when there are GPUs) when the notebook runs under ``--executor ray``; in order."""
    points = list(points)
    if os.environ.get("DECOYLAB_EXECUTOR") != "ray" or len(points) < 2:
        return [fn(p) for p in points]
    ray = init_ray(os.environ.get("DECOYLAB_RAY_ADDRESS") or "auto")
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    remote = ray.remote(num_gpus=gpus, max_retries=0)(fn)
    return ray.get([remote.remote(p) for p in points])
