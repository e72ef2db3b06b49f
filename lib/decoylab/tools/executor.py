"""Where notebook runs and sweep points execute: local processes (the default) or a Ray cluster.

``decoylab run --executor ray [--ray-address ADDRESS]`` sends each notebook run to a Ray task (one
GPU per task when the cluster has GPUs). The task executes the notebook into a scratch folder on
its worker and returns every file it wrote; the driver writes them under ``runs/`` exactly where a
local run puts them, so the outputs (executed notebook, figures, ``results.json``, the report) are
the same whichever executor ran them, and a worker need not share a disk with the driver.

Inside a notebook, ``decoylab.parallel.map_points(fn, points)`` computes sweep points on the same
cluster (this module passes the address in ``DECOYLAB_EXECUTOR`` and ``DECOYLAB_RAY_ADDRESS``).
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from decoylab.parallel import RayMissing, import_ray, init_ray

EXECUTORS = ("local", "ray")


class ExecutorError(Exception):
    """A problem found before anything ran: unknown executor, Ray missing, cluster unreachable."""


def check(executor: str, address: str | None, *, timeout: float = 5.0) -> None:
    """Refuse an unknown executor, a missing Ray, or a Ray address nothing answers on — before any
    notebook starts. ``address``: None (start a local Ray instance), ``auto`` (the cluster this
    machine belongs to), ``host:port`` or ``ray://host:port``."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"--executor {executor!r} is not allowed; allowed: {', '.join(EXECUTORS)}")
    if executor == "local":
        if address is not None:
            raise ExecutorError("--ray-address needs --executor ray")
        return
    try:
        import_ray()
    except RayMissing as err:
        raise ExecutorError(str(err)) from err
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r} is not allowed; give host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ExecutorError(f"--ray-address {address!r} cannot be reached ({err}); start the cluster "
                            f"(ray start --head) or leave --ray-address out to start a local Ray instance") from err


def _collect(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _execute_remotely(task, preset: str, env: dict[str, Any], address: str,
                      data_root: str | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """On a Ray worker: run the notebook into a scratch folder, return its document and files. ``data_root``
    (``decoylab run --data-root``) must be the same path on every node (a shared file system)."""
    import dataclasses

    from decoylab.tools import execution

    scratch = Path(tempfile.mkdtemp(prefix="decoylab-ray-"))
    try:
        os.environ["DECOYLAB_EXECUTOR"] = "ray"
        os.environ["DECOYLAB_RAY_ADDRESS"] = address
        if data_root:
            os.environ["DECOYLAB_DATA"] = data_root
        doc = execution.execute(dataclasses.replace(task, out_dir=scratch / task.name), preset, env)
        return doc, _collect(scratch / task.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_on_ray(tasks: list, preset: str, env: dict[str, Any], address: str | None,
               data_root: str | None = None) -> Iterator[tuple[Any, dict]]:
    """Yield ``(task, results document)`` as each notebook finishes on the cluster, after writing its
    files under ``task.out_dir`` (``results.json`` last, every file atomically)."""
    from decoylab.fileio import atomic_write_bytes
    from decoylab.tools.execution import RESULTS_FILE

    ray = init_ray(address)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    cluster_address = ray.get_runtime_context().gcs_address
    remote = ray.remote(num_gpus=gpus, max_retries=0)(_execute_remotely)
    pending = {remote.remote(t, preset, env, cluster_address, data_root): t for t in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                doc, files = ray.get(done[0])
            except Exception as err:  # the worker died: report it like a local crash
                yield task, {"status": "failed", "seconds": None,
                             "error": {"cell": None, "ename": type(err).__name__, "evalue": str(err)}}
                continue
            task.out_dir.mkdir(parents=True, exist_ok=True)
            for name, payload in sorted(files.items(), key=lambda kv: kv[0] == RESULTS_FILE):
                atomic_write_bytes(task.out_dir / name, payload)
            yield task, doc
    finally:  # interrupted (Ctrl-C, SIGTERM) or abandoned: stop what still runs or waits on the cluster
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone: nothing left to stop
                pass
