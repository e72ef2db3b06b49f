import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on a 2-core machine: one thread each (and in the notebook kernels they start),
    # or the intra-op threads of both spin against each other (half the CPU time went to the kernel).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's cache; they run on the CPU like CI."""
    root = tmp_path_factory.mktemp("decoylab-cache")
    old = {k: os.environ.get(k) for k in ("DECOYLAB_CACHE", "DECOYLAB_DEVICE")}
    os.environ["DECOYLAB_CACHE"] = str(root)
    os.environ["DECOYLAB_DEVICE"] = "cpu"
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
