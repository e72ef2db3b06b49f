"""Content-addressed store of trained weights and adversarial sets.

An entry's key is the SHA-256 of everything that determines it (dataset, n, architecture,
training and defense parameters, seed, kit version) in canonical JSON. Each entry is a
``.pt`` file (a dict of tensors and plain values, read with ``weights_only=True``) plus a
``.json`` sidecar with the payload's SHA-256 and the key's parts. Both are written to a
temporary file and renamed, payload first: an entry without a valid sidecar, or whose
payload does not match its hash, is treated as missing and rebuilt.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

import decoylab
from decoylab import config, costprobe
from decoylab.fileio import atomic_write_bytes, atomic_write_text, unwritable_reason


def canonical(value: Any, where: str = "key") -> Any:
    """A JSON-able, order-independent form of ``value`` (dataclasses, tuples, paths, dtypes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v, f"{where}.{k}") for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and 0.1 stays 0.1
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return {"tensor_sha256": hashlib.sha256(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                "shape": list(value.shape), "dtype": str(value.dtype)}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return canonical(value.item(), where)
    raise TypeError(f"{where}: values of type {type(value).__name__} cannot be part of a cache key")


@functools.lru_cache(maxsize=None)
def code_version(*modules) -> str:
    """SHA-256 of the source files of ``modules``: part of a cache key, so editing the code that
    builds an entry (an attack, the training loop) invalidates the entries it built."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def model_identity(model: nn.Module) -> dict[str, Any]:
    """The key parts that say which model a cached result was computed on: its repr (architecture
    and, through ``extra_repr``, the settings that are not tensors) and its weights and buffers."""
    return {"architecture": repr(model), "weights": model.state_dict()}


def make_key(kind: str, parts: Mapping[str, Any]) -> str:
    # entries made under the cost probe hold barely trained networks and partly attacked sets: never a real run's
    probe = {"cost_probe": True} if costprobe.log_path() is not None else {}
    blob = json.dumps({"kind": kind, "kit": decoylab.__version__, "parts": canonical(parts), **probe},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheNotWritableError(OSError):
    """The cache folder cannot be created or written: raised before anything is built, so no work is lost."""


class Cache:
    """A directory of entries; ``Cache()`` uses ``$DECOYLAB_CACHE`` (see ``decoylab.config``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else config.cache_root()
        self.hits = 0
        self.misses = 0
        # Seconds the entries this Cache returned took to build: measured on a miss, read from
        # the entry on a hit. So a training-time overhead is reported the same on a cached re-run.
        self.build_seconds = 0.0

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        folder = self.root / kind / key[:2]
        return folder / f"{key}.pt", folder / f"{key}.json"

    def load(self, kind: str, parts: Mapping[str, Any]) -> Any | None:
        """The stored object, or None when missing or corrupt (a corrupt entry is removed)."""
        loaded = self._load_with_meta(kind, parts)
        return None if loaded is None else loaded[0]

    def _load_with_meta(self, kind: str, parts: Mapping[str, Any]) -> tuple[Any, dict] | None:
        payload_path, meta_path = self._paths(kind, make_key(kind, parts))
        if not payload_path.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            payload = payload_path.read_bytes()
            if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
                raise ValueError("payload does not match its recorded SHA-256")
            return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu"), meta
        except Exception as err:  # any damage means "rebuild", never a crash
            warnings.warn(f"cache entry {payload_path} is corrupt ({err}); rebuilding it", stacklevel=2)
            payload_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, parts: Mapping[str, Any], obj: Any, seconds: float | None = None) -> Path:
        key = make_key(kind, parts)
        payload_path, meta_path = self._paths(kind, key)
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = buffer.getvalue()
        atomic_write_bytes(payload_path, payload)
        meta = {"kind": kind, "key": key, "kit": decoylab.__version__,
                "sha256": hashlib.sha256(payload).hexdigest(), "seconds": seconds, "parts": canonical(parts)}
        atomic_write_text(meta_path, json.dumps(meta, indent=1))  # written last: marks the entry complete
        return payload_path

    def get_or_build(self, kind: str, parts: Mapping[str, Any], build: Callable[[], Any]) -> Any:
        """Return the cached object for (kind, parts), building and storing it on a miss.

        A miss holds a lock on the entry while it builds: another process that wants the same entry
        (``decoylab run --jobs N``, or a workshop's participants sharing one cache) waits for it and
        loads it instead of building it a second time."""
        loaded = self._load_with_meta(kind, parts)
        if loaded is None:
            with self._build_lock(kind, make_key(kind, parts)):
                loaded = self._load_with_meta(kind, parts)  # built by another process while we waited?
                if loaded is None:
                    self.misses += 1
                    start = time.perf_counter()
                    obj = build()
                    seconds = time.perf_counter() - start
                    self.build_seconds += seconds
                    self.save(kind, parts, obj, seconds=round(seconds, 3))
                    return obj
        self.hits += 1
        self.build_seconds += float(loaded[1].get("seconds") or 0.0)
        return loaded[0]

    @contextlib.contextmanager
    def _build_lock(self, kind: str, key: str):
        """An exclusive advisory lock (``flock``) on one entry; none where the OS has no ``fcntl``.
        The kernel releases it when its holder exits, so a crashed build never blocks the others."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock, at worst two processes build the same entry
            yield
            return
        lock_path = self._paths(kind, key)[0].with_name(f".{key}.lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a")
        except OSError as err:  # before the build starts: refuse now rather than lose the built object
            raise CacheNotWritableError(unwritable_reason(self.root) or f"cannot write {lock_path} ({err})") from err
        with handle:
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process builds this entry: say who, then wait for it
                    holder = lock_path.read_text().strip() or "?"
                    warnings.warn(f"waiting for process {holder}, which is building cache entry {kind}/{key} "
                                  f"(lock {lock_path}); the wait ends when it finishes or exits — stop it if it "
                                  "is stuck", stacklevel=4)
                    fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # a file system without locks (some network mounts): build unlocked
                yield
                return
            handle.truncate(0)
            handle.write(str(os.getpid()))  # names the builder to whoever waits
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def model(self, model: nn.Module, parts: Mapping[str, Any], train: Callable[[nn.Module], Any]) -> nn.Module:
        """Load ``model``'s weights for ``parts``, or call ``train(model)`` and store them."""
        def build():
            train(model)
            return {k: v.detach().cpu() for k, v in model.state_dict().items()}

        state = self.get_or_build("models", parts, build)
        model.load_state_dict(state)
        return model.eval()
