"""XLA's native convolution with funconv's conventions: the tests' oracle, and the benchmarks' baseline.

(Outside `funconv/`, which must never reach `lax.conv_general_dilated`.)
"""

import jax.numpy as jnp
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
