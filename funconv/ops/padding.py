"""Padding the spatial axes of `(N, *spatial, C)` arrays, and its transpose."""

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax


def pad_spatial(x, pairs, fill: str = "constant", value=0.0, interior: Sequence[int] | None = None):
  """Pad the spatial axes of `x` (shape `(N, *spatial, C)`) by `pairs`, filling as `fill` says.

  Zero padding goes through `lax.pad` (negative pairs crop; `interior` inserts `interior_i` zeros
  between neighbours, the input dilation of a transposed convolution); `"wrap"` and `"reflect"`
  copy the input (`jnp.pad` modes).
  """
  interior = interior or (0,) * len(pairs)
  if fill != "constant":
    return jnp.pad(x, ((0, 0), *pairs, (0, 0)), mode=fill)
  if not any(lo or hi for lo, hi in pairs) and not any(interior):
    return x
  config = ((0, 0, 0), *((lo, hi, i) for (lo, hi), i in zip(pairs, interior)), (0, 0, 0))
  return lax.pad(x, jnp.asarray(value, x.dtype), config)


def unpad_spatial(dxp, pairs, fill: str = "constant"):
  """Transpose of `pad_spatial(x, pairs, fill)`: the cotangent of `x` from that of the padded array
  (wrapped and mirrored pads add back onto the elements they copy)."""
  if fill == "constant":
    return pad_spatial(dxp, [(-lo, -hi) for lo, hi in pairs])
  spatial = tuple(p - lo - hi for p, (lo, hi) in zip(dxp.shape[1:-1], pairs))
  shape = jax.ShapeDtypeStruct((dxp.shape[0], *spatial, dxp.shape[-1]), dxp.dtype)
  return jax.linear_transpose(lambda x: pad_spatial(x, pairs, fill), shape)(dxp)[0]
