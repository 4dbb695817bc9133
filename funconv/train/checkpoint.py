"""Checkpoints of a whole `TrainState` and the data-order position, written atomically and durably.

Format: one NumPy `.npz` archive (a standard, dependency-free format) holding every leaf of the
train state in tree order plus a JSON record of the position and the tree structure's string
for checking. orbax-checkpoint would add tensorstore and an async runtime for what one small
file does here. `save` keeps the checkpoint it replaces as `previous(path)`, and `load_latest`
falls back to it, so neither a process killed at any point nor a damaged newest file loses the run.
"""

import json
import os
import pathlib
import warnings
import zipfile

import jax
import numpy as np

# What zipfile, np.load and json raise on a truncated or corrupted archive (found by truncating a
# checkpoint at every length and flipping each of its bytes; OSError: a seek to a damaged offset).
# zipfile's CRC-32 catches damaged data.
_DAMAGED = (zipfile.BadZipFile, EOFError, KeyError, ValueError, NotImplementedError, RuntimeError, OSError)


def _is_key(leaf):
  return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def _leaves(tree):
  """Leaves as NumPy arrays; PRNG keys as their raw key data. An array replicated over the devices of
  several processes is read from this process's copy."""

  def host(leaf):
    leaf = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      if not leaf.is_fully_replicated:
        raise ValueError(f"save: an array sharded over several processes ({leaf.sharding}) cannot be saved to .npz")
      leaf = leaf.addressable_data(0)
    return np.asarray(leaf)

  return [host(leaf) for leaf in jax.tree.leaves(tree)]


def previous(path):
  """Where `save` keeps the checkpoint that `path` replaced: `ckpt.npz` -> `ckpt.prev.npz`.

  Args:
    path: a checkpoint's path, a string or `pathlib.Path`.

  Returns:
    A `pathlib.Path` beside `path`.

  Examples:
    >>> from funconv.train.checkpoint import previous
    >>> previous("out/checkpoint.npz").as_posix()
    'out/checkpoint.prev.npz'
  """
  path = pathlib.Path(path)
  return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(directory):
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def save(path, train_state, position):
  """Write `train_state` and the JSON-able `position` to `path` atomically, keeping the old `path` as the previous one.

  Exported as `funconv.train.save_checkpoint`. The archive (a NumPy `.npz`: every leaf of
  `train_state` in tree order, PRNG keys as their raw key data, and a JSON record of `position`
  and the tree structure) goes to `.{name}.tmp` beside `path` and is fsynced; then the old
  checkpoint is renamed to `previous(path)` (`name.prev.npz`), the new one to `path`, and the
  directory is fsynced, so that the renames survive a power cut as the file does. A process
  killed at any point leaves a complete newest checkpoint at `path` or, between the two
  renames, at `previous(path)`; an error while writing removes the temporary file and leaves
  both untouched. Missing parent directories are created.

  Args:
    path: the checkpoint's path, a string or `pathlib.Path` (by convention `*.npz`).
    train_state: a `TrainState` (any pytree of arrays and PRNG keys).
    position: a JSON-serialisable value recording where the run is, e.g. `{"epoch": 3, "batch": 0}`
      (`fit` stores its epoch, batch, history and early-stopping record).

  Returns:
    None.

  Raises:
    TypeError: `position` is not JSON-serialisable (no file is written).
    OSError: the file cannot be written (`ENOSPC` on a full disk, permissions).

  Examples:
    >>> import os, optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1))
    >>> fc.train.save_checkpoint("ckpt/checkpoint.npz", ts, {"epoch": 1, "batch": 0})
    >>> fc.train.save_checkpoint("ckpt/checkpoint.npz", ts, {"epoch": 2, "batch": 0})   # keeps the first
    >>> sorted(os.listdir("ckpt"))
    ['checkpoint.npz', 'checkpoint.prev.npz']
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {f"leaf_{i}": leaf for i, leaf in enumerate(_leaves(train_state))}
  meta = json.dumps(dict(position=position, treedef=str(jax.tree.structure(train_state))))
  tmp = path.with_name(f".{path.name}.tmp")  # one fixed name: a killed writer's leftover is overwritten next time
  try:
    with open(tmp, "wb") as f:
      np.savez(f, __meta__=np.frombuffer(meta.encode(), np.uint8), **arrays)
      f.flush()
      os.fsync(f.fileno())
    if path.exists():
      os.replace(path, previous(path))
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  _fsync_dir(path.parent)


def load(path, template):
  """`(train_state, position)` read from `path`, shaped like `template` (a `TrainState` of the same model).

  Exported as `funconv.train.load_checkpoint`. Every leaf is restored in `template`'s leaf's
  dtype, PRNG keys with its key implementation; `position` is what `save` was given, through
  JSON (tuples come back as lists, dict keys as strings). `load_latest` falls back to the
  previous checkpoint where `path` is damaged.

  Args:
    path: the checkpoint's path, a string or `pathlib.Path`.
    template: a `TrainState` (pytree) with the structure and shapes of the saved one, e.g. a
      fresh `init_train_state` of the same model, optimizer and input shape.

  Returns:
    `(train_state, position)`: a pytree with `template`'s structure, and the saved position.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: naming `path`, the file is truncated or corrupted, or holds a train state of
      another structure or other shapes (another model).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1), seed=1)
    >>> fc.train.save_checkpoint("run/checkpoint.npz", ts, {"epoch": 3, "batch": 0})
    >>> template = fc.train.init_train_state(net, opt, (8, 8, 1))          # another seed: other values
    >>> restored, position = fc.train.load_checkpoint("run/checkpoint.npz", template)
    >>> position, bool(jnp.all(restored.params[1][0] == ts.params[1][0])), restored.key.dtype == ts.key.dtype
    ({'epoch': 3, 'batch': 0}, True, True)
  """
  treedef = jax.tree.structure(template)
  like_leaves = jax.tree.leaves(template)
  with open(path, "rb") as f:  # outside the `try`: a missing file is no damaged one
    try:
      with np.load(f) as archive:
        meta = json.loads(archive["__meta__"].tobytes().decode())
        same = meta["treedef"] == str(treedef)
        leaves = [archive[f"leaf_{i}"] for i in range(len(like_leaves))] if same else []
    except _DAMAGED as err:
      raise ValueError(
        f"checkpoint {path} is truncated or corrupted and cannot be loaded ({type(err).__name__}: {err})"
      ) from err
  if not same or any(
    np.shape(a) != np.shape(jax.random.key_data(b) if _is_key(b) else b) for a, b in zip(leaves, like_leaves)
  ):
    raise ValueError(f"checkpoint {path} holds a different train state structure than the model being trained")
  restored = []
  for leaf, like in zip(leaves, like_leaves):
    if _is_key(like):
      restored.append(jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(like)))
    else:
      restored.append(jax.numpy.asarray(leaf, like.dtype))
  return jax.tree.unflatten(treedef, restored), meta["position"]


def load_latest(path, template):
  """`load` of the newest loadable checkpoint: `path`, else `previous(path)`; None when neither exists.

  `path` is missing only where a writer was killed between its two renames; where it is damaged
  (or mismatched), a `UserWarning` says so and the previous checkpoint is loaded.

  Args:
    path: the checkpoint's path, a string or `pathlib.Path`.
    template: as in `load`.

  Returns:
    `(train_state, position)` as `load`, or None where neither file exists.

  Raises:
    ValueError: the first `load` error (damaged or mismatched `path`) when no previous
      checkpoint stands in.

  Examples:
    >>> import optax
    >>> import funconv as fc
    >>> from funconv.train.checkpoint import load_latest
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1))
    >>> print(load_latest("nothing/checkpoint.npz", ts))
    None
    >>> fc.train.save_checkpoint("latest/checkpoint.npz", ts, {"epoch": 1})
    >>> load_latest("latest/checkpoint.npz", ts)[1]
    {'epoch': 1}
  """
  failure = None
  for candidate in (pathlib.Path(path), previous(path)):
    try:
      restored = load(candidate, template)
    except FileNotFoundError:
      continue
    except ValueError as err:
      failure = failure or err
      continue
    if failure is not None:
      warnings.warn(f"{failure}; loading the previous checkpoint {candidate} instead", stacklevel=2)
    return restored
  if failure is not None:
    raise failure
  return None
