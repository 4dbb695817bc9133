"""Checkpoints of a whole `TrainState` and the run's position, as numbered steps in a directory written by
orbax-checkpoint: atomic, asynchronous, from every process of a multi-host run, restored onto any
device count, and checked on reading.

Layout: `DIR/<step>/state` holds the train state in orbax's standard format (PRNG keys as their
key data) and `DIR/<step>/meta` a JSON record of the position, the tree structure, the leaves'
shapes and a CRC-32 of every leaf. orbax writes a step into a temporary directory and renames it
into place once complete, so a killed writer leaves the previous steps as they were; the CRC-32s
catch what orbax's format lets through (a flipped byte in an array's data reads back as another
value). Runs written before orbax, one `.npz` archive per checkpoint, still load.
"""

import json
import os
import pathlib
import warnings
import zipfile
import zlib

import jax
import numpy as np

from funconv.train.distributed import is_prng_key


def _host(leaf):
  """A leaf as a NumPy array, a PRNG key as its key data; an array replicated over the devices of several
  processes read from this process's copy."""
  leaf = jax.random.key_data(leaf) if is_prng_key(leaf) else leaf
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    if not leaf.is_fully_replicated:
      raise ValueError(f"save: an array sharded over several processes ({leaf.sharding}) cannot be checksummed")
    leaf = leaf.addressable_data(0)
  return np.asarray(leaf)


def _crc32(leaf):
  return zlib.crc32(np.ascontiguousarray(_host(leaf)).tobytes())


def _fsync(path):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _damaged(path, err):
  """The error for a checkpoint that cannot be read; orbax's messages can run to pages, so the first line only."""
  reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
  return ValueError(f"checkpoint {path} is truncated or corrupted and cannot be loaded ({reason})")


def _mismatch(path):
  return ValueError(f"checkpoint {path} holds a different train state structure than the model being trained")


class Checkpoints:
  """The numbered checkpoints of one run in `directory`, an orbax `CheckpointManager` with checked reads.

  `save` writes step `train_state.step` in the background (orbax's asynchronous save: the arrays
  are copied off the devices before it returns, so the caller may donate them) and keeps the
  newest `max_to_keep` steps. Every process of a multi-host run calls it alike; orbax has each
  write its share and process 0 commit the step by renaming its temporary directory, which
  funconv then fsyncs (files and directories) before the next save begins, so the previous step
  survives a power cut as well as a killed process. `load` restores a step onto any device count.
  Use it as a context manager, or `close` it, to wait for the last write.

  Args:
    directory: the run's checkpoint directory, a string or `pathlib.Path` (created if missing).
    max_to_keep: how many of the newest steps to keep (default 2: the newest and, should that one
      be damaged, the one before).
    read_only: only load (default False). A writer deletes the temporary directories that killed
      writers left; a reader leaves them, so it may read a directory that a run is writing.

  Examples:
    >>> import optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1))
    >>> with fc.train.Checkpoints("steps") as ckpts:
    ...   for step in range(3):
    ...     ckpts.save(ts._replace(step=ts.step + step), {"epoch": step})
    >>> fc.train.Checkpoints("steps").steps()      # the newest two are kept
    [1, 2]
    >>> restored, position = fc.train.Checkpoints("steps").load(ts)
    >>> int(restored.step), position
    (2, {'epoch': 2})
  """

  def __init__(self, directory, max_to_keep=2, read_only=False):
    import orbax.checkpoint as ocp  # tensorstore's start-up is paid by runs that write checkpoints

    self._ocp = ocp
    self.directory = pathlib.Path(directory)
    # A reader neither creates the directory nor deletes killed writers' temporary directories (orbax's own
    # read_only option logs warnings at every construction).
    options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only
    )
    self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)
    self._pending = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def path(self, step):
    """The directory of step `step`."""
    return self.directory / str(step)

  def steps(self):
    """The steps in the directory, oldest first (the one being written included)."""
    return sorted(self._manager.all_steps())

  def save(self, train_state, position, step=None):
    """Write `train_state` and the JSON-serialisable `position` as step `step` (default:
    `int(train_state.step)`).

    Steps of that number or later already there (the future of a run resumed from an earlier
    step) are deleted first. The write finishes in the background; `wait` (or the next `save`)
    waits for it. `train_state` may be any pytree of arrays and PRNG keys given `step`.

    Raises:
      TypeError: `position` is not JSON-serialisable (nothing is written).
      ValueError: an array of `train_state` is sharded over several processes.
    """
    self.wait()
    host = [_host(leaf) for leaf in jax.tree.leaves(train_state)]
    meta = dict(
      position=position,
      treedef=str(jax.tree.structure(train_state)),
      shapes=[list(a.shape) for a in host],
      dtypes=[a.dtype.name for a in host],
      crc32=[_crc32(a) for a in host],
    )
    json.dumps(meta)  # a TypeError here, not in orbax's background thread
    step = int(train_state.step) if step is None else step
    for later in [s for s in self._manager.all_steps() if s >= step]:
      self._manager.delete(later)
    state = jax.tree.map(lambda leaf: jax.random.key_data(leaf) if is_prng_key(leaf) else leaf, train_state)
    args = self._ocp.args
    self._manager.save(step, args=args.Composite(state=args.StandardSave(state), meta=args.JsonSave(meta)))
    self._pending = step

  def wait(self):
    """Wait until the last `save` is committed and on disk; an error of its write is raised here."""
    pending, self._pending = self._pending, None
    self._manager.wait_until_finished()
    if pending is not None and jax.process_index() == 0:  # the process that renamed the step into place
      for root, _, files in os.walk(self.path(pending)):
        for name in files:
          _fsync(os.path.join(root, name))
        _fsync(root)
      _fsync(self.directory)

  def clear(self):
    """Delete every step (a run starting afresh in this directory)."""
    self.wait()
    for step in self.steps():
      self._manager.delete(step)

  def close(self):
    """`wait`, then release orbax's manager (also where the write failed)."""
    try:
      self.wait()
    finally:
      self._manager.close()

  def load(self, template, step=None, sharding=None):
    """`(train_state, position)` of step `step`, or of the newest loadable step; None where there is none.

    With `step=None`, a damaged newest step (or one of another model) is skipped with a
    `UserWarning` naming it and why, and the step before it is loaded.

    Args:
      template: a `TrainState` (pytree) with the structure and shapes of the saved one, e.g. a
        fresh `init_train_state` of the same model, optimizer and input shape; the saved arrays
        are cast to its leaves' dtypes, PRNG keys wrapped with its key implementations.
      step: the step to load (default None: the newest loadable).
      sharding: where to put the arrays (default None: this process's first device), e.g.
        `funconv.train.distributed.replicated(mesh)` for a run on `mesh`, whatever the device count
        it was saved from.

    Returns:
      `(train_state, position)`, or None where `step` is None and the directory holds no step.

    Raises:
      FileNotFoundError: `step` is not in the directory.
      ValueError: naming the step's directory, it is truncated or corrupted (a CRC-32 mismatch
        included) or holds another model's train state; with `step=None`, the newest step's error
        where no older step loads.
    """
    if step is not None:
      if step not in self._manager.all_steps():
        raise FileNotFoundError(f"checkpoint {self.path(step)} does not exist")
      return self._load_step(step, template, sharding)
    return first_loadable(reversed(self.steps()), lambda s: self._load_step(s, template, sharding), self.path)

  def _load_step(self, step, template, sharding):
    path, args = self.path(step), self._ocp.args
    treedef, like = jax.tree.structure(template), jax.tree.leaves(template)
    like_data = [jax.random.key_data(leaf) if is_prng_key(leaf) else leaf for leaf in like]
    try:
      meta = self._manager.restore(step, args=args.Composite(meta=args.JsonRestore()))["meta"]
      same = meta["treedef"] == str(treedef) and meta["shapes"] == [list(np.shape(leaf)) for leaf in like_data]
    except Exception as err:  # orbax and tensorstore raise bare Exceptions too
      raise _damaged(path, err) from err
    if not same:
      raise _mismatch(path)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.unflatten(  # in the dtypes written, for the CRC-32s; cast to the template's below
      treedef,
      [jax.ShapeDtypeStruct(shape, dtype, sharding=sharding) for shape, dtype in zip(meta["shapes"], meta["dtypes"])],
    )
    try:
      state = self._manager.restore(step, args=args.Composite(state=args.StandardRestore(abstract)))["state"]
      leaves = jax.tree.leaves(state)
      if [_crc32(leaf) for leaf in leaves] != meta["crc32"]:
        raise ValueError("an array differs from the one written (CRC-32)")
    except Exception as err:
      raise _damaged(path, err) from err
    restored = [
      jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(ref)) if is_prng_key(ref) else leaf.astype(ref.dtype)
      for leaf, ref in zip(leaves, like)
    ]
    return jax.tree.unflatten(treedef, restored), meta["position"]


def first_loadable(candidates, load, name=str):
  """`load(candidate)` of the first of `candidates`, newest first, that loads; None where none exists.

  A candidate whose `load` raises `FileNotFoundError` is skipped; one that raises `ValueError`
  (damaged, or of another model) too, with a `UserWarning` that gives the error and names
  (`name(candidate)`) the one loaded instead. Where none loads, the first `ValueError` is raised.

  Examples:
    >>> import warnings
    >>> from funconv.train.checkpoint import first_loadable
    >>> def load(n):
    ...   if n == 3:
    ...     raise ValueError("checkpoint 3 is truncated or corrupted")
    ...   return f"state {n}"
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   first_loadable([3, 2, 1], load)
    'state 2'
    >>> str(caught[0].message)
    'checkpoint 3 is truncated or corrupted; loading the previous checkpoint 2 instead'
  """
  failure = None
  for candidate in candidates:
    try:
      restored = load(candidate)
    except FileNotFoundError:
      continue
    except ValueError as err:
      failure = failure or err
      continue
    if failure is not None:
      warnings.warn(f"{failure}; loading the previous checkpoint {name(candidate)} instead", stacklevel=3)
    return restored
  if failure is not None:
    raise failure
  return None


def save(directory, train_state, position, max_to_keep=2, step=None):
  """Write `train_state` and `position` as step `step` (default `int(train_state.step)`) of the checkpoints in
  `directory`, and wait until it is on disk.

  Exported as `funconv.train.save_checkpoint`: `Checkpoints(directory, max_to_keep).save` for one
  checkpoint (`fit` keeps one `Checkpoints` open through a run instead).

  Args:
    directory: the checkpoint directory, a string or `pathlib.Path` (created if missing).
    train_state: a `TrainState` (any pytree of arrays and PRNG keys, given `step`).
    position: a JSON-serialisable value recording where the run is, e.g. `{"epoch": 3, "batch": 0}`
      (`fit` stores its epoch, batch, history and early-stopping record).
    max_to_keep: how many of the newest steps to keep (default 2).
    step: the step's number (default None: `int(train_state.step)`).

  Returns:
    The step's directory, `directory/<step>`, a `pathlib.Path`.

  Raises:
    TypeError: `position` is not JSON-serialisable (nothing is written).
    OSError: the step cannot be written (`ENOSPC` on a full disk, permissions); the earlier steps
      are untouched.

  Examples:
    >>> import os, optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1))
    >>> fc.train.save_checkpoint("ckpt", ts, {"epoch": 1, "batch": 0}).name
    '0'
    >>> fc.train.save_checkpoint("ckpt", ts._replace(step=ts.step + 5), {"epoch": 2, "batch": 0}).name
    '5'
    >>> sorted(os.listdir("ckpt"))
    ['0', '5']
  """
  with Checkpoints(directory, max_to_keep) as ckpts:
    ckpts.save(train_state, position, step)
  return ckpts.path(int(train_state.step) if step is None else step)


def load(path, template, sharding=None):
  """`(train_state, position)` read from `path`, shaped like `template` (a `TrainState` of the same model).

  Exported as `funconv.train.load_checkpoint`. `path` is a checkpoint directory (its newest
  loadable step: a damaged newest step is skipped with a warning, as in `Checkpoints.load`), one
  step's directory `DIR/<step>`, or a `.npz` archive of the format funconv wrote before orbax
  (`checkpoint.npz`, `best.npz`). Every leaf is restored in `template`'s leaf's dtype, PRNG keys
  with its key implementation; `position` is what was saved, through JSON (tuples come back as
  lists, dict keys as strings).

  Args:
    path: a string or `pathlib.Path`.
    template: a `TrainState` (pytree) with the structure and shapes of the saved one, e.g. a
      fresh `init_train_state` of the same model, optimizer and input shape.
    sharding: as in `Checkpoints.load` (default: this process's first device).

  Returns:
    `(train_state, position)`: a pytree with `template`'s structure, and the saved position.

  Raises:
    FileNotFoundError: `path` does not exist or holds no checkpoint.
    ValueError: naming the file or step, it is truncated or corrupted, or holds a train state of
      another structure or other shapes (another model).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1), seed=1)
    >>> step = fc.train.save_checkpoint("run/checkpoints", ts, {"epoch": 3, "batch": 0})
    >>> template = fc.train.init_train_state(net, opt, (8, 8, 1))          # another seed: other values
    >>> restored, position = fc.train.load_checkpoint("run/checkpoints", template)
    >>> position, bool(jnp.all(restored.params[1][0] == ts.params[1][0])), restored.key.dtype == ts.key.dtype
    ({'epoch': 3, 'batch': 0}, True, True)
    >>> fc.train.load_checkpoint(step, template)[1]                # one step's directory
    {'epoch': 3, 'batch': 0}
  """
  path = pathlib.Path(path)
  if path.suffix == ".npz":
    return _load_npz(path, template, sharding)
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint {path} does not exist")
  step = int(path.name) if (path / "meta").is_dir() and path.name.isdigit() else None
  with Checkpoints(path if step is None else path.parent, read_only=True) as ckpts:
    restored = ckpts.load(template, step, sharding)
  if restored is None:
    raise FileNotFoundError(f"{path} holds no checkpoint")
  return restored


# What zipfile, np.load and json raise on a truncated or corrupted archive (found by truncating a
# checkpoint at every length and flipping each of its bytes; OSError: a seek to a damaged offset).
# zipfile's CRC-32 catches damaged data.
_NPZ_DAMAGED = (zipfile.BadZipFile, EOFError, KeyError, ValueError, NotImplementedError, RuntimeError, OSError)


def _load_npz(path, template, sharding):
  """A checkpoint of the `.npz` format: every leaf in tree order as `leaf_<i>` (PRNG keys as their key data) and
  `__meta__`, the UTF-8 JSON of `{"position": ..., "treedef": str(tree structure)}`."""
  treedef, like = jax.tree.structure(template), jax.tree.leaves(template)
  with open(path, "rb") as f:  # outside the `try`: a missing file is no damaged one
    try:
      with np.load(f) as archive:
        meta = json.loads(archive["__meta__"].tobytes().decode())
        same = meta["treedef"] == str(treedef)
        leaves = [archive[f"leaf_{i}"] for i in range(len(like))] if same else []
    except _NPZ_DAMAGED as err:
      raise _damaged(path, err) from err
  if not same or any(np.shape(a) != np.shape(_host(b)) for a, b in zip(leaves, like)):
    raise _mismatch(path)
  device = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restored = []
  for leaf, ref in zip(leaves, like):
    if is_prng_key(ref):
      restored.append(jax.random.wrap_key_data(jax.device_put(leaf, device), impl=jax.random.key_impl(ref)))
    else:
      restored.append(jax.device_put(np.asarray(leaf, ref.dtype), device))
  return jax.tree.unflatten(treedef, restored), meta["position"]
