"""Padding specifications: resolution to per-axis `(low, high)` pairs and their application."""
from typing import Sequence

import jax.numpy as jnp
from jax import lax

from funconv.ops.windows import as_tuple, conv_output_size, dilate_size

# Modes that pad with copies of the input rather than with zeros, and the jnp.pad mode for each.
_EDGE_MODES = {"CIRCULAR": "wrap", "REFLECT": "reflect"}
_STRING_MODES = ("SAME", "SAME_LOWER", "VALID", "CAUSAL", *_EDGE_MODES)


def resolve_padding(padding, in_shape: Sequence[int], window: Sequence[int], strides: Sequence[int],
                    dilation: Sequence[int], op: str) -> tuple[tuple[tuple[int, int], ...], str]:
  """Resolve a padding specification to `(pairs, fill)`.

  `pairs` holds one `(low, high)` per spatial axis; `fill` is `"constant"` (zeros), `"wrap"`
  (CIRCULAR) or `"reflect"` (REFLECT). Accepted specifications:

  - `"VALID"`: no padding. `"SAME"` (`"SAME_LOWER"`): output size `ceil(W / S)`, the odd pixel on
    the high (low) side, as in `lax.conv_general_dilated`.
  - `"CAUSAL"` (1-D only): `D (K - 1)` zeros before the signal, none after, so output `t` sees
    inputs up to `t`.
  - `"CIRCULAR"`, `"REFLECT"`: the amounts of `"SAME"`, filled by wrapping or mirroring the input.
  - an int `p` (`p` on both sides of every axis) or one `(low, high)` pair per spatial axis.
  """
  rank = len(window)
  dilated = [dilate_size(k, d) for k, d in zip(window, dilation)]
  if isinstance(padding, str):
    mode = padding.upper()
    if mode not in _STRING_MODES:
      raise ValueError(f"{op}: unknown padding {padding!r}; expected one of {', '.join(_STRING_MODES)}, "
                       "an int, or one (low, high) pair per spatial axis")
    if mode == "CAUSAL":
      if rank != 1:
        raise ValueError(f"{op}: padding='CAUSAL' is for 1-D windows, got a {rank}-D window {tuple(window)}")
      return ((dilated[0] - 1, 0),), "constant"
    lax_mode = "SAME" if mode in _EDGE_MODES else mode
    pairs = tuple(tuple(p) for p in lax.padtype_to_pads(tuple(in_shape), dilated, tuple(strides), lax_mode))
    fill = _EDGE_MODES.get(mode, "constant")
    if fill == "reflect" and any(max(p) >= n for p, n in zip(pairs, in_shape)):
      raise ValueError(f"{op}: padding='REFLECT' needs every pad smaller than the input; pads {pairs} "
                       f"for spatial shape {tuple(in_shape)}")
    return pairs, fill
  if isinstance(padding, int):
    padding = ((padding, padding),) * rank
  try:
    pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
  except (TypeError, ValueError):
    raise ValueError(f"{op}: padding must be a string, an int or {rank} (low, high) pairs, "
                     f"got {padding!r}") from None
  if len(pairs) != rank:
    raise ValueError(f"{op}: padding needs one (low, high) pair per spatial axis ({rank}), got {padding!r}")
  return pairs, "constant"


def pad_spatial(x, pairs, fill: str = "constant", value=0.0, interior: Sequence[int] | None = None):
  """Pad the spatial axes of `x` (shape `(N, *spatial, C)`) by `pairs`, filling as `fill` says.

  Zero padding goes through `lax.pad` (negative pairs crop; `interior` inserts `interior_i` zeros
  between neighbours, the input dilation of a transposed convolution).
  """
  interior = interior or (0,) * len(pairs)
  if fill != "constant":
    return jnp.pad(x, ((0, 0), *pairs, (0, 0)), mode=fill)
  if not any(lo or hi for lo, hi in pairs) and not any(interior):
    return x
  config = ((0, 0, 0), *((lo, hi, i) for (lo, hi), i in zip(pairs, interior)), (0, 0, 0))
  return lax.pad(x, jnp.asarray(value, x.dtype), config)


def conv_output_shape(in_shape: Sequence[int], window: Sequence[int], strides=None, padding="VALID", dilation=None,
                      op: str = "conv_output_shape") -> tuple[int, ...]:
  """Spatial output shape of a convolution or pooling window over spatial shape `in_shape`.

  `padding` is any specification `resolve_padding` takes; per axis the rule is
  `conv_output_size`: `floor((W + lo + hi - D (K - 1) - 1) / S) + 1`. Entries below 1 mean the
  window does not fit. This is the rule the layers use for shape inference.

  Example:
    >>> conv_output_shape((28, 28), (5, 5))
    (24, 24)
    >>> conv_output_shape((32, 32), (3, 3), strides=2, padding="SAME")
    (16, 16)
  """
  rank = len(window)
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  pairs, _ = resolve_padding(padding, in_shape, window, strides, dilation, op)
  return tuple(conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip(in_shape, window, strides, pairs, dilation))
