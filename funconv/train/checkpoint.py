"""Checkpoints of a whole `TrainState` and the data-order position, written atomically.

Format: one NumPy `.npz` archive (a standard, dependency-free format) holding every leaf of the
train state in tree order plus a JSON record of the position and the tree structure's string
for checking. It is written to a temporary file in the same directory, flushed to disk, and
renamed over the old checkpoint (`os.replace`), so a process killed mid-write leaves the
previous checkpoint intact. orbax-checkpoint would add tensorstore and an async runtime for
what one small file does here.
"""
import json
import os
import pathlib
import tempfile

import jax
import numpy as np


def _is_key(leaf):
  return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def _leaves(tree):
  """Leaves as NumPy arrays; PRNG keys as their raw key data."""
  return [np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf) for leaf in jax.tree.leaves(tree)]


def save(path, train_state, position):
  """Atomically write `train_state` and the JSON-able `position` (e.g. epoch, batch) to `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {f"leaf_{i}": leaf for i, leaf in enumerate(_leaves(train_state))}
  meta = json.dumps(dict(position=position, treedef=str(jax.tree.structure(train_state))))
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, __meta__=np.frombuffer(meta.encode(), np.uint8), **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def load(path, template):
  """`(train_state, position)` from `path`, shaped like `template` (a TrainState of the same model)."""
  with np.load(pathlib.Path(path)) as archive:
    meta = json.loads(archive["__meta__"].tobytes().decode())
    leaves = [archive[f"leaf_{i}"] for i in range(len(archive.files) - 1)]
  treedef = jax.tree.structure(template)
  like_leaves = jax.tree.leaves(template)
  if (meta["treedef"] != str(treedef) or len(leaves) != len(like_leaves)
      or any(np.shape(a) != np.shape(jax.random.key_data(b) if _is_key(b) else b) for a, b in zip(leaves, like_leaves))):
    raise ValueError(f"checkpoint {path} holds a different train state structure than the model being trained")
  restored = []
  for leaf, like in zip(leaves, like_leaves):
    if _is_key(like):
      restored.append(jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(like)))
    else:
      restored.append(jax.numpy.asarray(leaf, like.dtype))
  return jax.tree.unflatten(treedef, restored), meta["position"]
