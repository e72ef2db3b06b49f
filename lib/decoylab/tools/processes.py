"""Processes the runner starts and must be able to stop: each notebook's worker, the kernel the worker starts (in a
session of its own) and whatever that kernel starts."""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the runner dies, even by SIGKILL (prctl PR_SET_PDEATHSIG), so
    that no orphan goes on writing into a runs folder the next run owns. Elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; elsewhere none). jupyter_client starts each kernel in a new
    session, so it and whatever it started are outside the worker's process group and must be found by parentage."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(command name)": state, ppid, ...
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and the process groups of everything below it, then each of those processes
    by pid (one may have left its group with setsid); never the caller's own group."""
    below = descendants(pid)
    groups = {pid}
    for child in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(child))
    groups.discard(os.getpgrp())
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for child in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
