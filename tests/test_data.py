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
