"""XLA's native convolution with funconv's conventions: the tests' oracle, and the benchmarks' baseline.

(Outside `funconv/`, which must never reach `lax.conv_general_dilated`.)
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funconv as fc
from funconv.ops.shapes import as_tuple

LAYOUTS = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def native_conv(x, w, strides=None, padding="VALID", dilation=None, groups=1):
  """`funconv.ops.conv`'s semantics on `lax.conv_general_dilated`: `(*batch, *spatial, C)`, every padding mode."""
  rank = w.ndim - 2
  strides = as_tuple(strides, rank, "strides", "native_conv")
  dilation = as_tuple(dilation, rank, "dilation", "native_conv")
  batch = x.shape[: x.ndim - rank - 1]
  x3 = x.reshape(-1, *x.shape[x.ndim - rank - 1 :])
  pairs, fill = fc.ops.resolve_padding(padding, x3.shape[1:-1], w.shape[:-2], strides, dilation, "oracle")
  if fill != "constant":
    x3, pairs = jnp.pad(x3, ((0, 0), *pairs, (0, 0)), mode=fill), [(0, 0)] * rank
  y = lax.conv_general_dilated(
    x3, w, strides, pairs, rhs_dilation=dilation, feature_group_count=groups, dimension_numbers=LAYOUTS[rank]
  )
  return y.reshape(*batch, *y.shape[1:])


def native_conv_transpose(x, w, strides, padding, dilation):
  """`funconv.ops.conv_transpose`'s semantics on `lax.conv_transpose`: `(*batch, *spatial, C)`."""
  rank = w.ndim - 2
  batch = x.shape[: x.ndim - rank - 1]
  x3 = x.reshape(-1, *x.shape[x.ndim - rank - 1 :])
  if isinstance(padding, int):
    padding = [(padding, padding)] * rank
  y = lax.conv_transpose(x3, w, strides, padding, dilation, LAYOUTS[rank])
  return y.reshape(*batch, *y.shape[1:])


def sum_error_bound(terms, dtype=jnp.float32, growth=1.0):
  """A bound on the rounding error of a floating-point sum of `terms` products, relative to the largest result:
  `growth * terms * eps`. Higham's worst case (*Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.4)
  is `terms * eps` times the sum of the products' magnitudes, which for the tests' random normal data is up to
  about `sqrt(terms)` times the largest result, while rounding errors of random sign grow as `sqrt(terms) * eps`:
  this bound holds both with room. `growth` is for algorithms that round more (Winograd's F(4, 3): 10 in 2-D,
  Barabasz et al. 2018). Two results of one sum in other orders (devices, chunks, algorithms) are within twice
  the bound of each other."""
  return growth * terms * float(jnp.finfo(dtype).eps)


def assert_close_to_largest(got, want, bound):
  """Every leaf of `got` within `bound` of `want`'s, relative to the largest absolute value of that leaf of `want`."""
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    error, largest = float(np.max(np.abs(a - b), initial=0.0)), float(np.max(np.abs(b), initial=0.0))
    assert error <= bound * largest, f"error {error:.3g} > {bound:.3g} x the largest value {largest:.3g}"
