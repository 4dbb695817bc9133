"""Data sets: the embedded default (scikit-learn's digits) and readers for the standard files of
MNIST, Fashion-MNIST, KMNIST (IDX) and CIFAR-10/100 (python pickles) in a directory you name.

Every loader returns a `DataSet` of float32 images `(N, H, W, C)` in [0, 1] and int32 labels.
Readers never touch the network: a missing file raises `FileNotFoundError` saying which files to
place where; a truncated or corrupted file, or images and labels that do not match (different
counts, labels out of range), a `ValueError` naming the file. `load(..., download=True)`
(`funconv-train --download`) first fetches the missing files with `funconv.data.fetch` (SHA-256
checked, resumable, atomic).
"""
import gzip
import pathlib
import pickle
import tarfile
import zlib
from typing import NamedTuple

import numpy as np

from funconv.data.download import fetch


class DataSet(NamedTuple):
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def digits(seed=0, test_fraction=0.2):
  """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images (values 0-16, scaled to
  [0, 1]), 10 classes; a fixed split (`seed`) keeps `test_fraction` for testing. Nothing is downloaded."""
  from sklearn.datasets import load_digits
  data = load_digits()
  images = (data.images / 16.0).astype(np.float32)[..., None]
  order = np.random.default_rng(seed).permutation(len(images))
  split = int(round(len(images) * (1 - test_fraction)))
  train, test = order[:split], order[split:]
  labels = data.target.astype(np.int32)
  return DataSet(images[train], labels[train], images[test], labels[test], 10)


def read_idx(path):
  """An IDX file (MNIST's format, gzipped or not) as a NumPy array of its declared dtype and shape."""
  path = pathlib.Path(path)
  try:
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
      raw = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as err:
    raise ValueError(f"read_idx: {path} is a truncated or corrupted gzip file ({err}); replace it") from err
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number {raw[:4]!r})")
  dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
  if raw[2] not in dtypes:
    raise ValueError(f"read_idx: {path} has unknown IDX type code {raw[2]:#x}")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise ValueError(f"read_idx: {path} ends inside its header ({len(raw)} bytes for {ndim} dimensions; truncated?)")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
  data = np.frombuffer(raw, dtypes[raw[2]], offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise ValueError(f"read_idx: {path} declares shape {shape} but holds {data.size} values (truncated?)")
  return data.reshape(shape)


def _examples(dataset, images, labels, num_classes, source):
  """`(images, labels)` checked to be `(N, H, W, C)` images and `N` int labels in `[0, num_classes)`: a ValueError
  naming `dataset` and the files `source` otherwise (a file swapped for another, a truncated set, wrong labels)."""
  if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{dataset}: {source} hold images of shape {images.shape} and labels of shape {labels.shape} "
                     f"and dtype {labels.dtype}; expected N images and N integer labels")
  if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
    raise ValueError(f"{dataset}: the labels in {source} must be in [0, {num_classes}), found values from "
                     f"{labels.min()} to {labels.max()}")
  return images, labels.astype(np.int32)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_SETS = ("mnist", "fashion_mnist", "kmnist")


def _find(directory, name, suffixes, dataset):
  for suffix in suffixes:
    candidate = pathlib.Path(directory) / f"{name}{suffix}"
    if candidate.exists():
      return candidate
  raise FileNotFoundError(
      f"{dataset}: {name}{suffixes[0]} not found in {pathlib.Path(directory).resolve()}. Place the standard files "
      f"there yourself, or download them (network needed): funconv.data.fetch({dataset!r}, data_dir) or "
      f"funconv-train --download.")


def idx_dataset(data_dir, name="mnist"):
  """MNIST, Fashion-MNIST or KMNIST (`name`) from the four standard IDX files in `data_dir`,
  gzipped (`train-images-idx3-ubyte.gz`, ...) or not. Images `(N, 28, 28, 1)` in [0, 1]."""
  if name not in IDX_SETS:
    raise ValueError(f"idx_dataset: name must be one of {IDX_SETS}, got {name!r}")
  paths = [_find(data_dir, base, (".gz", ""), name) for base in IDX_FILES]
  x_train, y_train, x_test, y_test = [read_idx(path) for path in paths]
  scale = lambda images: (images.astype(np.float32) / 255.0)[..., None]
  train = _examples(name, scale(x_train), y_train, 10, f"{paths[0]} and {paths[1]}")
  test = _examples(name, scale(x_test), y_test, 10, f"{paths[2]} and {paths[3]}")
  return DataSet(*train, *test, 10)


def _cifar_batches(data_dir, names, label_key, dataset, num_classes):
  directory = pathlib.Path(data_dir)
  archive = directory / ("cifar-10-python.tar.gz" if dataset == "cifar10" else "cifar-100-python.tar.gz")
  folder = directory / ("cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python")
  if not folder.exists() and archive.exists():
    try:
      with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
      raise ValueError(f"{dataset}: cannot extract {archive} ({err}): truncated or corrupted? Delete it and "
                       f"{folder}, then download it again") from err
  xs, ys = [], []
  for name in names:
    path = _find(folder, name, ("",), dataset)
    try:  # anything that does not unpickle to a CIFAR batch: a truncated or foreign file
      with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
      xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
      ys.append(np.asarray(batch[label_key]))
    except Exception as err:
      raise ValueError(f"{dataset}: {path} is not a CIFAR python batch with {label_key!r} labels "
                       f"({type(err).__name__}: {err}); truncated or corrupted?") from err
    _examples(dataset, xs[-1], ys[-1], num_classes, path)
  return (np.concatenate(xs).astype(np.float32) / 255.0), np.concatenate(ys).astype(np.int32)


def cifar10(data_dir):
  """CIFAR-10 from the python pickles (`cifar-10-batches-py/data_batch_1..5`, `test_batch`, or the
  `cifar-10-python.tar.gz` archive) in `data_dir`. Images `(N, 32, 32, 3)` in [0, 1]."""
  train = _cifar_batches(data_dir, [f"data_batch_{i}" for i in range(1, 6)], b"labels", "cifar10", 10)
  test = _cifar_batches(data_dir, ["test_batch"], b"labels", "cifar10", 10)
  return DataSet(*train, *test, 10)


def cifar100(data_dir, label="fine"):
  """CIFAR-100 from the python pickles (`cifar-100-python/train`, `test`, or the archive) in
  `data_dir`; `label` is `"fine"` (100 classes) or `"coarse"` (20)."""
  if label not in ("fine", "coarse"):
    raise ValueError(f"cifar100: label must be 'fine' or 'coarse', got {label!r}")
  key, num_classes = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}[label]
  train = _cifar_batches(data_dir, ["train"], key, "cifar100", num_classes)
  test = _cifar_batches(data_dir, ["test"], key, "cifar100", num_classes)
  return DataSet(*train, *test, num_classes)


def load(name, data_dir=None, download=False):
  """A data set by name: `digits` (embedded), `mnist`, `fashion_mnist`, `kmnist`, `cifar10`, `cifar100`.

  With `download=True` the standard files missing from `data_dir` are fetched first (`fetch`).
  """
  if name == "digits":
    return digits()
  if data_dir is None:
    raise ValueError(f"load: data set {name!r} is read from files: give data_dir (--data-dir)")
  if download:
    fetch(name, data_dir)
  if name in IDX_SETS:
    return idx_dataset(data_dir, name)
  if name in ("cifar10", "cifar100"):
    return {"cifar10": cifar10, "cifar100": cifar100}[name](data_dir)
  raise ValueError(f"load: unknown data set {name!r}; expected digits, {', '.join(IDX_SETS)}, cifar10 or cifar100")
