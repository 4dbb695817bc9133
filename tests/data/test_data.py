"""Readers on files the tests write in each standard format; the pipeline; augmentation."""

import gzip
import pickle
import struct
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funconv import data


def write_idx(path, array, compress):
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("name", data.sets.IDX_SETS)
@pytest.mark.parametrize("compress", [True, False])
def test_idx_sets_read_what_was_written(tmp_path, name, compress):
  rng = np.random.default_rng(0)
  arrays = [
    rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, 5, dtype=np.uint8),
    rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, 3, dtype=np.uint8),
  ]
  for base, array in zip(data.sets.IDX_FILES, arrays):
    write_idx(tmp_path / (base + (".gz" if compress else "")), array, compress)
  ds = data.load(name, tmp_path)
  assert ds.x_train.shape == (5, 28, 28, 1) and ds.x_test.shape == (3, 28, 28, 1)
  np.testing.assert_allclose(ds.x_train[..., 0], arrays[0] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(ds.y_test, arrays[3])
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32


def test_read_idx_rejects_bad_files(tmp_path):
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
  with pytest.raises(ValueError, match="not an IDX file"):
    data.read_idx(tmp_path / "bad")
  write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8), False)
  (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
  with pytest.raises(ValueError, match="truncated"):
    data.read_idx(tmp_path / "short")


def write_cifar_batch(path, n, label_key, seed):
  rng = np.random.default_rng(seed)
  batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: list(rng.integers(0, 10, n))}
  path.write_bytes(pickle.dumps(batch))
  return batch


def test_cifar10_from_pickles_and_from_the_archive(tmp_path):
  folder = tmp_path / "src" / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  batches = [write_cifar_batch(folder / f"data_batch_{i}", 2, b"labels", i) for i in range(1, 6)]
  test = write_cifar_batch(folder / "test_batch", 3, b"labels", 9)
  ds = data.cifar10(tmp_path / "src")
  assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
  first = batches[0][b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0
  np.testing.assert_allclose(ds.x_train[0], first, rtol=1e-6)
  np.testing.assert_array_equal(ds.y_test, test[b"labels"])
  with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  from_archive = data.cifar10(tmp_path)
  np.testing.assert_array_equal(from_archive.x_train, ds.x_train)


def test_cifar100_fine_and_coarse(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  for name, n in (("train", 4), ("test", 2)):
    rng = np.random.default_rng(n)
    batch = {
      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
      b"fine_labels": list(rng.integers(0, 100, n)),
      b"coarse_labels": list(rng.integers(0, 20, n)),
    }
    (folder / name).write_bytes(pickle.dumps(batch))
  assert data.cifar100(tmp_path).num_classes == 100
  coarse = data.cifar100(tmp_path, label="coarse")
  assert coarse.num_classes == 20 and coarse.y_train.max() < 20


def test_missing_files_say_where_to_put_them(tmp_path):
  with pytest.raises(
    FileNotFoundError, match=r"train-images-idx3-ubyte.gz not found in .*Place the standard files.*fetch"
  ):
    data.load("mnist", tmp_path)
  with pytest.raises(ValueError, match="give data_dir"):
    data.load("cifar10")


def test_digits_is_the_embedded_default():
  ds = data.digits()
  assert ds.x_train.shape[1:] == (8, 8, 1) and len(ds.x_train) + len(ds.x_test) == 1797
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  np.testing.assert_array_equal(data.digits().y_test, ds.y_test)  # a fixed split


def test_batches_are_deterministic_resumable_and_drop_the_remainder():
  x, y = np.arange(10)[:, None], np.arange(10)
  full = list(data.batches(x, y, 3, seed=1, epoch=2))
  assert len(full) == 3 and all(len(b[0]) == 3 for b in full)
  again = list(data.batches(x, y, 3, seed=1, epoch=2))
  np.testing.assert_array_equal(np.concatenate([b[1] for b in full]), np.concatenate([b[1] for b in again]))
  resumed = list(data.batches(x, y, 3, seed=1, epoch=2, start=1))
  np.testing.assert_array_equal(resumed[0][1], full[1][1])
  assert len(list(data.batches(x, y, 3, drop_remainder=False))) == 4
  other_epoch = np.concatenate([b[1] for b in data.batches(x, y, 3, seed=1, epoch=3)])
  assert not np.array_equal(other_epoch, np.concatenate([b[1] for b in full]))


def test_augmentation_is_per_example_and_shape_preserving():
  images = jnp.tile(jnp.arange(64.0).reshape(1, 8, 8, 1), (16, 1, 1, 1))
  out = jax.jit(data.augmenter(crop_padding=2, flip=True))(jax.random.key(0), images)
  assert out.shape == images.shape
  assert len({np.asarray(o).tobytes() for o in out}) > 4  # examples got different crops/flips
  flipped = data.random_flip(jax.random.key(3), images[0])
  assert jnp.array_equal(flipped, images[0]) or jnp.array_equal(flipped, images[0][:, ::-1])
  np.testing.assert_allclose(
    data.normalize(jnp.ones((2, 2, 3)), (1.0, 0.0, 0.5), (1.0, 2.0, 0.5)),
    jnp.broadcast_to(jnp.array([0.0, 0.5, 1.0]), (2, 2, 3)),
  )
