"""Data parallelism with JAX's own SPMD machinery: a mesh over the `"data"` axis, the train state
replicated on it, each process's share of a global batch placed with
`jax.make_array_from_process_local_data`, and many processes joined by `jax.distributed`."""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize(coordinator_address=None, num_processes=None, process_id=None):
  """Join this process to the others of a multi-host run: `jax.distributed.initialize`, called once, before any
  computation.

  With all three arguments None, JAX detects the cluster itself (SLURM, Open MPI, Kubernetes,
  Cloud TPU); where it finds none, this is a run of one process and nothing is done. On CPUs the
  processes' collectives run over gloo.

  Args:
    coordinator_address: `"host:port"` of process 0's coordination service.
    num_processes: the number of processes in the run.
    process_id: this process's index, in `[0, num_processes)`.

  Returns:
    None.

  Raises:
    ValueError, RuntimeError: as `jax.distributed.initialize`, where any argument is given (e.g.
      after JAX has computed already, or with a `process_id` out of range).

  Examples:
    >>> from funconv.train.distributed import initialize
    >>> initialize()                               # no cluster here: one process, nothing to join
  """
  if jax.distributed.is_initialized():
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # read by the CPU backend alone
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (ValueError, RuntimeError) as err:
    # With nothing given, a process that found no cluster (ValueError, before JAX starts anything) or that
    # computed already (RuntimeError: too late to join one, e.g. `run()` called from Python) runs alone.
    if (coordinator_address, num_processes, process_id) != (None, None, None):
      raise
    if isinstance(err, ValueError) and "coordinator_address" not in str(err):
      raise


def data_mesh(devices=None):
  """A one-axis mesh `("data",)` over `devices` for data-parallel training.

  Args:
    devices: None (default: every device JAX sees, across all processes), an int `n` (the first
      `n` of `jax.devices()`), or a sequence of devices.

  Returns:
    A `jax.sharding.Mesh` with one Auto axis `"data"`.

  Raises:
    ValueError: `n` is not in `[1, jax.device_count()]`, or, in a run of several processes, does
      not take every process's devices.

  Examples:
    >>> from funconv.train.distributed import data_mesh
    >>> mesh = data_mesh(1)
    >>> mesh.axis_names, mesh.size
    (('data',), 1)
  """
  if devices is None:
    devices = jax.devices()
  elif isinstance(devices, int):
    count = jax.device_count()
    if not 1 <= devices <= count:
      raise ValueError(f"data_mesh: devices must be in [1, {count}] (the devices JAX sees), got {devices}")
    if jax.process_count() > 1 and devices != count:
      raise ValueError(
        f"data_mesh: a run of {jax.process_count()} processes trains on all {count} devices, got devices={devices}"
      )
    devices = jax.devices()[:devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=list(devices))


def batch_sharding(mesh):
  """The sharding of a global batch: its leading axis split over `"data"`, the others whole.

  Examples:
    >>> from funconv.train.distributed import batch_sharding, data_mesh
    >>> batch_sharding(data_mesh(1)).spec
    P('data',)
  """
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh):
  """The sharding of the params, optimiser state and metrics: a full copy on every device of `mesh`.

  Examples:
    >>> from funconv.train.distributed import data_mesh, replicated
    >>> replicated(data_mesh(1)).is_fully_replicated
    True
  """
  return NamedSharding(mesh, P())


def check_batch_size(mesh, batch_size, who="fit"):
  """Raise a `ValueError` (its message starting with `who`) unless `batch_size` splits evenly over `mesh`'s devices.

  Examples:
    >>> from funconv.train.distributed import check_batch_size, data_mesh
    >>> check_batch_size(data_mesh(1), 50)                  # one device takes any batch
  """
  if batch_size % mesh.size:
    raise ValueError(
      f"{who}: the global batch_size {batch_size} does not divide over the {mesh.size} devices of the mesh; "
      f"use a multiple of {mesh.size}"
    )


def process_rows(mesh, batch_size):
  """The rows of a global batch that this process's devices of `mesh` hold.

  Each process loads only these rows of every batch (e.g. `funconv.data.batches(..., rows=...)`)
  and places them with `place_batch`.

  Args:
    mesh: a mesh with a `"data"` axis (`data_mesh`).
    batch_size: the global batch size, a multiple of `mesh.size`.

  Returns:
    A `slice` of `range(batch_size)`: all of it in a run of one process.

  Raises:
    ValueError: `batch_size` does not divide over the devices.

  Examples:
    >>> from funconv.train.distributed import data_mesh, process_rows
    >>> process_rows(data_mesh(1), 64)
    slice(0, 64, None)
  """
  check_batch_size(mesh, batch_size)
  rows = [s[0] for s in batch_sharding(mesh).addressable_devices_indices_map((batch_size,)).values()]
  start, stop = min(r.start or 0 for r in rows), max(batch_size if r.stop is None else r.stop for r in rows)
  return slice(start, stop)


def place_batch(mesh, batch_size, *local):
  """Global arrays of `batch_size` examples, sharded over `"data"`, from this process's rows of each.

  Args:
    mesh: a mesh with a `"data"` axis.
    batch_size: the global batch size `B`.
    *local: arrays `(rows, ...)` holding this process's `process_rows(mesh, B)` of the batch
      (NumPy or JAX arrays).

  Returns:
    A tuple of `jax.Array`s `(B, ...)`, one per `local` array, placed with
    `jax.make_array_from_process_local_data` and `batch_sharding(mesh)`.

  Examples:
    >>> import numpy as np
    >>> from funconv.train.distributed import data_mesh, place_batch
    >>> x, y = place_batch(data_mesh(1), 8, np.zeros((8, 4, 4, 1), np.float32), np.arange(8))
    >>> x.shape, x.sharding.spec, y.shape
    ((8, 4, 4, 1), P('data',), (8,))
  """
  sharding = batch_sharding(mesh)
  return tuple(jax.make_array_from_process_local_data(sharding, a, (batch_size, *np.shape(a)[1:])) for a in local)


def replicate(mesh, tree):
  """`tree` as global arrays replicated over `mesh`: a copy on every device of every process.

  Args:
    mesh: a mesh.
    tree: a pytree of arrays and typed PRNG keys (e.g. a `TrainState`), equal in every process;
      a leaf that is already a global array is read from this process's first copy of it.

  Returns:
    The same pytree of `jax.Array`s with `replicated(mesh)` sharding (keys stay keys).

  Examples:
    >>> import jax, optax
    >>> import funconv as fc
    >>> from funconv.train.distributed import data_mesh, replicate
    >>> ts = fc.train.init_train_state(fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1), (8, 8, 1))
    >>> placed = replicate(data_mesh(1), ts)
    >>> all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed))
    True
  """
  sharding = replicated(mesh)

  def place(leaf):
    if is_prng_key(leaf):
      return jax.random.wrap_key_data(place(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(place, tree)


def is_prng_key(leaf):
  """True for a typed PRNG key array (`jax.random.key`): placed and stored as its raw key data
  (`jax.random.key_data`), wrapped again with its key implementation.

  Examples:
    >>> import jax, numpy as np
    >>> from funconv.train.distributed import is_prng_key
    >>> is_prng_key(jax.random.key(0)), is_prng_key(jax.random.PRNGKey(0)), is_prng_key(np.zeros(2))
    (True, False, False)
  """
  return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def barrier(name):
  """Wait until every process reaches the barrier `name` (nothing to wait for in a run of one process).

  Examples:
    >>> from funconv.train.distributed import barrier
    >>> barrier("checkpoints listed")
  """
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def is_main_process():
  """True in process 0, the one that prints and writes the run's files (always, in a run of one process).

  Examples:
    >>> from funconv.train.distributed import is_main_process
    >>> is_main_process()
    True
  """
  return jax.process_index() == 0
