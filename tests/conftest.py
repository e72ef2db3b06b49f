import os

import pytest


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
