"""Files written whole or not at all: readers see the old file or the new one, never a part."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask: read from /proc on Linux; elsewhere set and restored at once (the only portable way)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never a part; the file gets
    the permissions the umask gives any new file (0644 under the usual 022), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600 whatever the umask; a shared cache or a runs folder served to
        # colleagues needs the permissions an ordinary open() would give (0644 under umask 022)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def unwritable_reason(root: Path, variable: str = "DECOYLAB_CACHE", what: str = "cache folder") -> str | None:
    """Why nothing can be stored under ``root`` (a message naming it and what to do), or None when it can."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as err:
        return (f"cannot write the {what} {root} ({err.strerror or err}); set {variable} to a folder you can write, or "
                "give yourself write access to this one")
    return None
