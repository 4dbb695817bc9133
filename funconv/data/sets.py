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
  """A data set as NumPy arrays, what every loader returns: a train and a test split, and the class count.

  Attributes:
    x_train: float32 images `(N_train, H, W, C)`, values in [0, 1].
    y_train: int32 labels `(N_train,)`, in `[0, num_classes)`.
    x_test: float32 images `(N_test, H, W, C)`, values in [0, 1].
    y_test: int32 labels `(N_test,)`.
    num_classes: the number of classes, an int.

  Examples:
    >>> import funconv as fc
    >>> data = fc.data.digits()
    >>> data.x_train.shape, data.x_train.dtype, data.y_train.dtype, data.num_classes
    ((1438, 8, 8, 1), dtype('float32'), dtype('int32'), 10)
    >>> x_train, y_train, x_test, y_test, num_classes = data          # a namedtuple unpacks
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def digits(seed=0, test_fraction=0.2):
  """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, 10 classes. Nothing is downloaded.

  Values 0-16 are scaled to [0, 1]; a fixed split (a permutation drawn from `seed`) keeps about `test_fraction`
  of the examples for testing: the first `round(1797 * (1 - test_fraction))` of the permutation train. Needs
  scikit-learn.

  Args:
    seed: the seed of the split's permutation (default 0).
    test_fraction: the fraction of examples kept for testing, in [0, 1] (default 0.2).

  Returns:
    A `DataSet`: images `(N, 8, 8, 1)` float32 in [0, 1], int32 labels, `num_classes` 10.

  Examples:
    >>> import funconv as fc
    >>> data = fc.data.digits()
    >>> data.x_train.shape, data.x_test.shape, float(data.x_train.max())
    ((1438, 8, 8, 1), (359, 8, 8, 1), 1.0)
    >>> fc.data.digits(test_fraction=0.5).x_train.shape
    (898, 8, 8, 1)
  """
  from sklearn.datasets import load_digits

  data = load_digits()
  images = (data.images / 16.0).astype(np.float32)[..., None]
  order = np.random.default_rng(seed).permutation(len(images))
  split = int(round(len(images) * (1 - test_fraction)))
  train, test = order[:split], order[split:]
  labels = data.target.astype(np.int32)
  return DataSet(images[train], labels[train], images[test], labels[test], 10)


def read_idx(path):
  """An IDX file (MNIST's format, gzipped or not) as a NumPy array of its declared dtype and shape.

  Args:
    path: the file, a `str` or `pathlib.Path`; read with gzip where its suffix is `.gz`.

  Returns:
    A read-only NumPy array of the declared shape and dtype (big-endian `uint8`, `int8`, `int16`,
    `int32`, `float32` or `float64`), values as stored (MNIST images: 0-255 `uint8`).

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: a truncated or corrupted gzip file, a bad magic number or type code, a truncated header,
      or fewer or more values than the declared shape.

  Examples:
    >>> import gzip, pathlib
    >>> import numpy as np
    >>> import funconv as fc
    >>> def write_idx(path, array):        # IDX: 0, 0, type code (0x08: uint8), rank, big-endian sizes, data
    ...   with gzip.open(path, "wb") as f:
    ...     f.write(bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    ...             + array.astype(np.uint8).tobytes())
    >>> write_idx("labels.gz", np.arange(6))
    >>> labels = fc.data.read_idx("labels.gz")
    >>> labels.tolist(), labels.dtype, labels.shape
    ([0, 1, 2, 3, 4, 5], dtype('uint8'), (6,))
  """
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
    raise ValueError(
      f"{dataset}: {source} hold images of shape {images.shape} and labels of shape {labels.shape} "
      f"and dtype {labels.dtype}; expected N images and N integer labels"
    )
  if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
    raise ValueError(
      f"{dataset}: the labels in {source} must be in [0, {num_classes}), found values from "
      f"{labels.min()} to {labels.max()}"
    )
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
    f"funconv-train --download."
  )


def idx_dataset(data_dir, name="mnist"):
  """MNIST, Fashion-MNIST or KMNIST (`name`) from the four standard IDX files in `data_dir`.

  The files are `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
  `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, preferred) or not. Nothing is downloaded: see `fetch`
  or `load(..., download=True)`.

  Args:
    data_dir: the directory, a `str` or `pathlib.Path`.
    name: `"mnist"` (default), `"fashion_mnist"` or `"kmnist"`: names the data set in messages (all three
      have the same files and 10 classes).

  Returns:
    A `DataSet`: images `(N, 28, 28, 1)` float32 in [0, 1] (60,000 train and 10,000 test for the real
    files), int32 labels, `num_classes` 10.

  Raises:
    ValueError: an unknown `name`; a corrupted file (see `read_idx`); images and labels that do not
      match (not `(N, H, W)` and `(N,)`) or labels outside [0, 10).
    FileNotFoundError: a file is missing (the message says where to place it).

  Examples:
    >>> import gzip, pathlib
    >>> import numpy as np
    >>> import funconv as fc
    >>> def write_idx(path, array):        # IDX: 0, 0, type code (0x08: uint8), rank, big-endian sizes, data
    ...   with gzip.open(path, "wb") as f:
    ...     f.write(bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    ...             + array.astype(np.uint8).tobytes())
    >>> pathlib.Path("mnist").mkdir()
    >>> for split, n in [("train", 6), ("t10k", 2)]:          # tiny stand-ins for the real files
    ...   write_idx(f"mnist/{split}-images-idx3-ubyte.gz", np.full((n, 28, 28), 255))
    ...   write_idx(f"mnist/{split}-labels-idx1-ubyte.gz", np.arange(n))
    >>> data = fc.data.idx_dataset("mnist")
    >>> data.x_train.shape, data.x_train.dtype, float(data.x_train.max()), data.y_test.tolist()
    ((6, 28, 28, 1), dtype('float32'), 1.0, [0, 1])
  """
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
      raise ValueError(
        f"{dataset}: cannot extract {archive} ({err}): truncated or corrupted? Delete it and "
        f"{folder}, then download it again"
      ) from err
  xs, ys = [], []
  for name in names:
    path = _find(folder, name, ("",), dataset)
    try:  # anything that does not unpickle to a CIFAR batch: a truncated or foreign file
      with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
      xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
      ys.append(np.asarray(batch[label_key]))
    except Exception as err:
      raise ValueError(
        f"{dataset}: {path} is not a CIFAR python batch with {label_key!r} labels "
        f"({type(err).__name__}: {err}); truncated or corrupted?"
      ) from err
    _examples(dataset, xs[-1], ys[-1], num_classes, path)
  return (np.concatenate(xs).astype(np.float32) / 255.0), np.concatenate(ys).astype(np.int32)


def cifar10(data_dir):
  """CIFAR-10 from the python pickles in `data_dir`.

  Reads `data_dir/cifar-10-batches-py/data_batch_1` to `data_batch_5` and `test_batch`; where that folder
  is missing and the archive `data_dir/cifar-10-python.tar.gz` is there, it is extracted first. Nothing
  is downloaded: see `fetch` or `load(..., download=True)`.

  Args:
    data_dir: the directory, a `str` or `pathlib.Path`.

  Returns:
    A `DataSet`: images `(N, 32, 32, 3)` float32 in [0, 1] (50,000 train and 10,000 test for the real
    files), int32 labels, `num_classes` 10.

  Raises:
    FileNotFoundError: a batch file is missing (the message says where to place it).
    ValueError: a corrupted archive or batch file, or labels outside [0, 10).

  Examples:
    >>> import pathlib, pickle
    >>> import numpy as np
    >>> import funconv as fc
    >>> folder = pathlib.Path("cifar-10-batches-py"); folder.mkdir()
    >>> for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:    # 2 blank images each
    ...   _ = (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 7]}))
    >>> data = fc.data.cifar10(".")
    >>> data.x_train.shape, data.x_train.dtype, data.y_test.tolist(), data.num_classes
    ((10, 32, 32, 3), dtype('float32'), [3, 7], 10)
  """
  train = _cifar_batches(data_dir, [f"data_batch_{i}" for i in range(1, 6)], b"labels", "cifar10", 10)
  test = _cifar_batches(data_dir, ["test_batch"], b"labels", "cifar10", 10)
  return DataSet(*train, *test, 10)


def cifar100(data_dir, label="fine"):
  """CIFAR-100 from the python pickles in `data_dir`, with its fine or coarse labels.

  Reads `data_dir/cifar-100-python/train` and `test`; where that folder is missing and the archive
  `data_dir/cifar-100-python.tar.gz` is there, it is extracted first. Nothing is downloaded.

  Args:
    data_dir: the directory, a `str` or `pathlib.Path`.
    label: `"fine"` (default: 100 classes) or `"coarse"` (20 superclasses).

  Returns:
    A `DataSet`: images `(N, 32, 32, 3)` float32 in [0, 1] (50,000 train and 10,000 test for the real
    files), int32 labels, `num_classes` 100 or 20.

  Raises:
    ValueError: another `label`; a corrupted archive or file; labels outside `[0, num_classes)`.
    FileNotFoundError: a file is missing (the message says where to place it).

  Examples:
    >>> import pathlib, pickle
    >>> import numpy as np
    >>> import funconv as fc
    >>> folder = pathlib.Path("cifar-100-python"); folder.mkdir()
    >>> for name in ["train", "test"]:                              # 2 blank images each
    ...   batch = {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [42, 99], b"coarse_labels": [1, 19]}
    ...   _ = (folder / name).write_bytes(pickle.dumps(batch))
    >>> fc.data.cifar100(".").num_classes, fc.data.cifar100(".", label="coarse").y_test.tolist()
    (100, [1, 19])
  """
  if label not in ("fine", "coarse"):
    raise ValueError(f"cifar100: label must be 'fine' or 'coarse', got {label!r}")
  key, num_classes = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}[label]
  train = _cifar_batches(data_dir, ["train"], key, "cifar100", num_classes)
  test = _cifar_batches(data_dir, ["test"], key, "cifar100", num_classes)
  return DataSet(*train, *test, num_classes)


def load(name, data_dir=None, download=False):
  """A data set by name: `"digits"` (embedded), `"mnist"`, `"fashion_mnist"`, `"kmnist"`, `"cifar10"`,
  `"cifar100"` (fine labels).

  `digits` is `digits()` (default split); the others are read from `data_dir` by `idx_dataset`,
  `cifar10` or `cifar100`. With `download=True` the standard files missing from `data_dir` are fetched
  first (`fetch`: network needed, SHA-256 checked).

  Args:
    name: the data set's name.
    data_dir: the directory of the files (default None: only `"digits"` works without one).
    download: fetch missing files first (default False).

  Returns:
    A `DataSet` (float32 images `(N, H, W, C)` in [0, 1], int32 labels).

  Raises:
    ValueError: an unknown `name`, no `data_dir` for a file-based data set, or a corrupted file.
    FileNotFoundError: a file is missing and `download` is False.
    OSError: a download failed.

  Examples:
    >>> import funconv as fc
    >>> fc.data.load("digits").x_test.shape
    (359, 8, 8, 1)
    >>> fc.data.load("mnist")
    Traceback (most recent call last):
    ValueError: load: data set 'mnist' is read from files: give data_dir (--data-dir)
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
