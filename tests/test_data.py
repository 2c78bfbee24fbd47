"""Offline datasets: the real MNIST-5k digits, and the CIFAR-10 / image-folder loaders on files
generated here in their standard formats."""

import pickle

import numpy as np
import pytest
import torch

from flightco.data import load_dataset
from flightco.errors import DataError


def test_mnist5k_is_real_and_split_stratified():
    ds = load_dataset("mnist5k", test_fraction=0.2, val_fraction=0.1, seed=0)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 5000
    assert len(ds.test) == 1000 and (ds.in_channels, ds.resolution, ds.num_classes) == (1, 28, 10)
    assert torch.bincount(ds.test.y).tolist() == [100] * 10
    # normalised with training statistics
    assert abs(float(ds.train.x.mean())) < 0.05 and abs(float(ds.train.x.std()) - 1) < 0.05


def test_test_split_never_moves_with_the_seed():
    a = load_dataset("mnist5k", seed=0)
    b = load_dataset("mnist5k", seed=7)
    assert torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.val.y, b.val.y) or not torch.equal(a.val.x, b.val.x)


def _write_cifar(folder, n_per_batch=20, batches=2, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i + 1}" for i in range(batches)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, size=n_per_batch))}
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh)
    return folder


def test_cifar10_folder_loader(tmp_path):
    root = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=root, val_fraction=0.25)
    assert (ds.in_channels, ds.resolution) == (3, 32)
    assert len(ds.test) == 20 and len(ds.train) + len(ds.val) == 40
    assert ds.train.x.shape[1:] == (3, 32, 32)


def test_cifar10_pixel_layout_is_channel_planes(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    imgs = np.zeros((4, 3, 32, 32), dtype=np.uint8)
    imgs[0::2, 0] = 255  # images 0 and 2 are pure red, 1 and 3 black
    for name in ("data_batch_1", "test_batch"):
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": imgs.reshape(4, -1), b"labels": [0, 1, 0, 1]}, fh)
    ds = load_dataset("cifar10", root=root, val_fraction=0.5)
    x = ds.test.x[0]  # a red image: its red plane is above the mean, the others at it
    assert float(x[0].mean()) > float(x[1].mean())  # red channel is the brightest


def test_image_folder_loader(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls, value in (("cat", 30), ("dog", 220)):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((20, 20, 3), value + i, dtype=np.uint8)).save(d / f"{i}.png")
    ds = load_dataset("image_folder", root=tmp_path, val_fraction=0.2, options={"resolution": 16})
    assert ds.num_classes == 2 and ds.resolution == 16 and len(ds.test) == 12


@pytest.mark.parametrize("name", ["cifar10", "image_folder"])
def test_missing_dataset_folder_is_clear(tmp_path, name):
    with pytest.raises(DataError, match="not found"):
        load_dataset(name, root=tmp_path / "nowhere")


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="dataset.name must be one of"):
        load_dataset("imagenet")


def test_synthetic_is_learnable_shape():
    ds = load_dataset("synthetic", options={"num_samples": 100, "resolution": 8, "num_classes": 4})
    assert ds.num_classes == 4 and ds.train.x.shape[-1] == 8


def test_limit_train_keeps_every_class():
    ds = load_dataset("mnist5k", limit_train=200)
    assert abs(len(ds.train) - 200) <= 10
    assert torch.bincount(ds.train.y, minlength=10).min() >= 15


# ---- Fashion-MNIST ------------------------------------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder, n_train=40, n_test=20, seed=0, compress=True):
    import gzip

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in files.items():
        data = _idx(array)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder, files


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, compress):
    root, files = _write_fashion(tmp_path / "fm", compress=compress)
    ds = load_dataset("fashion_mnist", root=root, val_fraction=0.25, options={"verify": False})
    assert (ds.in_channels, ds.resolution, ds.num_classes) == (1, 28, 10)
    assert len(ds.test) == 20 and len(ds.train) + len(ds.val) == 40
    assert ds.test.y.tolist() == files["t10k-labels-idx1-ubyte"].tolist()  # the official test split, in order


def test_fashion_mnist_refuses_files_that_fail_their_md5(tmp_path):
    root, _ = _write_fashion(tmp_path / "fm")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: md5 .* published"):
        load_dataset("fashion_mnist", root=root)


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", root=tmp_path / "nowhere")


def test_fashion_mnist_truncated_idx_is_one_line_error(tmp_path):
    root, _ = _write_fashion(tmp_path / "fm", compress=False)
    path = root / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: IDX header says"):
        load_dataset("fashion_mnist", root=root, options={"verify": False})


def test_fashion_mnist_from_debian_package_matches_published_checksums():
    from flightco.data import FASHION_MNIST_ROOT

    if not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{FASHION_MNIST_ROOT} not present: apt-get install dataset-fashion-mnist (.ci/run does)")
    ds = load_dataset("fashion_mnist", val_fraction=0.1)  # verify=True: every file passed its md5
    assert len(ds.train) + len(ds.val) == 60000 and len(ds.test) == 10000
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10
    assert abs(float(ds.train.x.mean())) < 0.05  # normalised with training statistics
