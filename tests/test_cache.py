import contextlib
import os

import pytest
import torch

from decoylab import cache as cache_mod
from decoylab import fileio
from decoylab.cache import Cache


def _builder(calls):
    def build():
        calls.append(1)
        return {"w": torch.arange(6.0).reshape(2, 3), "meta": {"eps": 0.3}}
    return build


def test_miss_then_hit(tmp_path):
    cache, calls = Cache(tmp_path), []
    parts = {"dataset": "mnist5k", "n": 100, "seed": 0}
    first = cache.get_or_build("adv", parts, _builder(calls))
    second = cache.get_or_build("adv", parts, _builder(calls))
    assert len(calls) == 1 and (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first["w"], second["w"]) and second["meta"] == {"eps": 0.3}


def test_key_depends_on_every_part_and_not_on_order():
    k = cache_mod.make_key
    assert k("m", {"a": 1, "b": 0.1}) == k("m", {"b": 0.1, "a": 1})
    assert k("m", {"a": 1}) != k("m", {"a": 2})
    assert k("m", {"a": 1}) != k("other", {"a": 1})
    assert k("m", {"x": torch.zeros(3)}) != k("m", {"x": torch.tensor([0.0, 0.0, 1e-7])})
    with pytest.raises(TypeError, match="key.f"):
        k("m", {"f": object()})


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_sidecar"])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, damage):
    cache, calls = Cache(tmp_path), []
    parts = {"id": damage}
    cache.get_or_build("models", parts, _builder(calls))
    payload = next(tmp_path.rglob("*.pt"))
    if damage == "flip_byte":
        raw = bytearray(payload.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        payload.write_bytes(bytes(raw))
    elif damage == "truncate":
        payload.write_bytes(payload.read_bytes()[:50])
    else:
        payload.with_suffix(".json").unlink()
    with pytest.warns(UserWarning, match="corrupt") if damage != "drop_sidecar" else contextlib.nullcontext():
        again = cache.get_or_build("models", parts, _builder(calls))
    assert len(calls) == 2 and torch.equal(again["w"], torch.arange(6.0).reshape(2, 3))
    assert cache.load("models", parts) is not None  # the rebuilt entry is valid


def test_crash_during_write_leaves_no_partial_file(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    real_fsync = os.fsync

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(fileio.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        cache.save("models", {"id": 1}, {"w": torch.ones(1000)})
    monkeypatch.setattr(fileio.os, "fsync", real_fsync)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert cache.load("models", {"id": 1}) is None


def test_atomic_write_keeps_old_file_when_replacement_fails(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    fileio.atomic_write_text(target, "old")

    def crash(src, dst):
        raise OSError("killed (simulated)")

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(OSError):
        fileio.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_model_weights_load_with_weights_only(tmp_path):
    cache = Cache(tmp_path)
    net = torch.nn.Linear(3, 2)
    trained = []
    cache.model(net, {"n": 1}, lambda m: trained.append(torch.nn.init.ones_(m.weight)))
    fresh = torch.nn.Linear(3, 2)
    cache.model(fresh, {"n": 1}, lambda m: trained.append("again"))
    assert len(trained) == 1 and torch.equal(fresh.weight, torch.ones(2, 3))


def _build_in_another_process(root, log_path, building, asking):
    """Worker of the test below. The first caller's build waits until the second caller is about to
    ask for the same entry, so without the lock both would find it missing and build it."""
    import time

    def build():
        with open(log_path, "a") as log:
            log.write("built\n")
        if not building.is_set():
            building.set()
            asking.wait(60)
            time.sleep(0.5)  # the second caller is now inside get_or_build
        return {"w": torch.ones(3)}

    if building.is_set():
        asking.set()
    return Cache(root).get_or_build("models", {"id": "shared"}, build)["w"].tolist()


def test_two_processes_wanting_one_entry_build_it_once(tmp_path):
    """The second process waits on the first one's build lock and loads its entry (decoylab run --jobs N)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    log_path = tmp_path / "builds.log"
    with ctx.Manager() as manager:
        building, asking = manager.Event(), manager.Event()
        with ctx.Pool(2) as pool:
            args = (tmp_path / "cache", log_path, building, asking)
            first = pool.apply_async(_build_in_another_process, args)
            assert building.wait(60)  # the first build is under way before the second process asks
            second = pool.apply_async(_build_in_another_process, args)
            assert first.get(60) == second.get(60) == [1.0, 1.0, 1.0]
    assert log_path.read_text() == "built\n"


def test_a_file_system_without_locks_still_builds_and_stores(tmp_path, monkeypatch):
    """flock failing (ENOLCK on some network mounts) must not stop a build: it runs unlocked."""
    import fcntl

    def no_locks(handle, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    cache, calls = Cache(tmp_path), []
    first = cache.get_or_build("adv", {"id": 2}, _builder(calls))
    assert len(calls) == 1 and torch.equal(first["w"], cache.load("adv", {"id": 2})["w"])



def test_written_files_get_the_permissions_of_the_umask(tmp_path, monkeypatch):
    """A shared cache and a runs folder served to colleagues must be readable by others: every file the kit writes
    (through fileio: cache entries, results, figures, reports) gets 0666 less the umask, not mkstemp's 0600."""
    import os
    import stat

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from decoylab import results
    from decoylab.cache import Cache

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    monkeypatch.setenv("DECOYLAB_RUN_DIR", str(tmp_path / "run"))
    previous = os.umask(0o022)
    try:
        entry = Cache(tmp_path / "cache").save("models", {"a": 1}, {"w": torch.zeros(2)})
        results.record("a_rate", 0.5, n=10, proportion=True)
        results.save_figure(plt.figure(), "figure")
        os.umask(0o077)
        fileio.atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
        results.clear()
    written = [entry, entry.with_suffix(".json"), *(p for p in (tmp_path / "run").rglob("*") if p.is_file())]
    assert len(written) >= 4 and all(mode(p) == 0o644 for p in written), {str(p): oct(mode(p)) for p in written}
    assert mode(tmp_path / "private.txt") == 0o600


def test_a_cache_folder_that_cannot_be_written_is_refused_before_building(tmp_path):
    """(A path below a plain file cannot be created even by root, so this holds for every user.)"""
    from decoylab.cache import CacheNotWritableError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    built = []
    with pytest.raises(CacheNotWritableError, match="DECOYLAB_CACHE") as info:
        Cache(blocker / "cache").get_or_build("adv", {"n": 1}, lambda: built.append(1) or torch.ones(1))
    assert str(blocker / "cache") in str(info.value) and built == []  # nothing computed and then lost


def test_waiting_on_another_builder_names_it(tmp_path):
    """A build that waits on another process's lock says which process it waits for (a stuck one can be stopped)."""
    import fcntl
    import threading
    import time
    import warnings

    from decoylab.cache import make_key

    cache = Cache(tmp_path)
    key = make_key("adv", {"n": 7})
    lock_path = cache._paths("adv", key)[0].with_name(f".{key}.lock")
    lock_path.parent.mkdir(parents=True)
    holder = open(lock_path, "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: flock makes it a second owner, as another process
    holder.write("424242")
    holder.flush()
    caught, result = [], []

    def wanting():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result.append(cache.get_or_build("adv", {"n": 7}, lambda: torch.ones(2)))
        caught.extend(str(w.message) for w in seen)

    thread = threading.Thread(target=wanting)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive()  # still waiting
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    thread.join(30)
    assert any("waiting for process 424242" in m and "adv/" in m for m in caught), caught
    assert torch.equal(result[0], torch.ones(2)) and lock_path.read_text() == str(os.getpid())
