"""Stand-in data sets in each one's real on-disk format (small, synthetic, the right shapes and dtypes): MNIST's raw
idx files in torchvision's layout, CIFAR-10's python pickle batches, SVHN's .mat files. Written by tests into a
folder given as ``data_root``; the class of image i is i % 10, and its pixels encode it, so a net can learn it."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _images(n: int, shape: tuple[int, ...], seed: int, stripe: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    x[..., :4, :] = (labels * 25).reshape((-1,) + (1,) * len(shape))  # a class-coded band
    if stripe:  # a stripe at a class-coded height: a tiny net learns it in an epoch or two (Luring's M∘P on SVHN was
        # at chance without it), and an L∞ attack of ε 0.3 can still cover its 30 levels above the noise (at 255
        # PGD succeeded on none). Not on CIFAR-10's stand-ins: with it, notebook 12 there recorded no MMD number
        # at all (its ε 8/255 attacks succeeded too rarely).
        for label in range(10):
            x[labels == label, ..., 4 + 2 * label:6 + 2 * label, :] = 90
    return x, labels


def write_mnist_raw(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """``root/mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uint8, big-endian idx headers)."""
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = _images(n, (28, 28), seed)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes())
    return root


def write_cifar10(root: Path, per_batch: int = 40, n_test: int = 100) -> Path:
    """``root/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``: pickled dicts with a
    (N, 3072) uint8 ``data`` array (channel-major rows) and a list of ``labels``, as CIFAR-10 ships them."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        x, y = _images(n_test if name == "test_batch" else per_batch, (3, 32, 32), seed, stripe=False)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x.reshape(len(x), -1), "labels": y.tolist(), "batch_label": name}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class {i}" for i in range(10)]}, f, protocol=2)
    return root


def write_svhn(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """``root/svhn/{train,test}_32x32.mat``: X of shape (32, 32, 3, N) uint8 and y (N, 1) with 10 for the digit 0."""
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = _images(n, (3, 32, 32), seed)
        savemat(folder / f"{split}_32x32.mat", {"X": np.transpose(x, (2, 3, 1, 0)), "y": np.where(y == 0, 10, y)[:, None]})
    return root
