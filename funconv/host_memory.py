"""Host memory kept by the process, so that compiled CPU calls stop paying for fresh pages.

XLA:CPU allocates each call's scratch buffer anew (one block: 475 MiB for a ResNet-20 training step at
batch 128) and frees it after; glibc maps blocks that large with `mmap` and returns them on `free`, so
every call faults in and zeroes every page again. On a 2-core virtual machine that was 121,000 page
faults per step, and the step ran 1.23x faster without them (experiments/profile_step.py,
bench_train.py; docs/convolution.md).
"""

import ctypes
import platform
import warnings

# mallopt's parameters in glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# Free memory at the top of the heap past this many bytes goes back to the system (mallopt takes an int).
TRIM_THRESHOLD = 2**31 - 1


def _backend_started():
  """Whether JAX has started a backend (and with it XLA's worker threads)."""
  try:
    from jax._src import xla_bridge
  except ImportError:
    return False
  return getattr(xla_bridge, "backends_are_initialized", lambda: False)()


def reuse_host_memory() -> bool:
  """Make freed host memory stay with the process, for the next compiled call to reuse.

  Sets glibc's allocator (`mallopt`) to serve every thread from one heap (`M_ARENA_MAX` 1), never
  from `mmap` (`M_MMAP_MAX` 0), and to keep up to 2 GiB of freed memory at the heap's top
  (`M_TRIM_THRESHOLD`). A compiled call's scratch buffer then comes from memory the previous call
  freed instead of fresh pages: a ResNet-20 training step on two cores ran 1.2x faster (no page
  faults instead of 121,000 per step), and PyTorch in the same process 1.07x. The process keeps
  its peak memory until it exits.

  Call it first, before the first JAX computation: XLA's worker threads start with the backend and
  each keeps the allocator arena it started with. `funconv-train` and the benchmarks in
  `experiments/` call it. It changes the allocator of the whole process (PyTorch's and NumPy's
  arrays too), and does nothing on systems without glibc (macOS, Windows, musl).

  Returns:
    True if the allocator was set before JAX's backend started, so that compiled calls reuse
    memory; False without glibc, or (with a `RuntimeWarning`) if the backend had already started.

  Examples:
    First thing in a program (here, where JAX has already run, it would warn and return False):

    >>> import funconv as fc
    >>> fc.reuse_host_memory()  # doctest: +SKIP
    True

    Called late, it says so:

    >>> import warnings
    >>> import jax.numpy as jnp
    >>> _ = jnp.zeros(1)  # JAX's backend starts
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   fc.reuse_host_memory()
    False
    >>> [w.category.__name__ for w in caught]
    ['RuntimeWarning']
  """
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  mallopt = ctypes.CDLL(None).mallopt
  settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
  applied = all(mallopt(param, value) == 1 for param, value in settings)
  if applied and _backend_started():
    warnings.warn(
      "reuse_host_memory: JAX's backend has already started, and its worker threads keep the allocator "
      "arenas they started with, so compiled calls still map fresh memory; call it before the first JAX "
      "computation",
      RuntimeWarning,
      stacklevel=2,
    )
    return False
  return applied
