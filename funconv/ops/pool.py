"""Pooling from strided slices and reshapes; no `lax.reduce_window`, whose max gradient
(SelectAndScatter) is slow on CPU.

Windows that tile the input exactly (`strides == window`) reduce a reshaped view; overlapping
windows fold the per-tap strided slices with `maximum` or `add`.
"""

import math

import jax.numpy as jnp
from jax import lax

from funconv.ops.gather import strided_window_slice, window_offsets
from funconv.ops.padding import pad_spatial
from funconv.ops.shapes import as_tuple, check_inexact, flatten_batch, positive_int, resolve_window, spatial_rank


def _prepare(x, window, strides, padding, op):
  """Checks and geometry: `(x3, batch, window, strides, pairs, fill, out)`. The window's rank (or the strides')
  is the pooling's: an int window and stride pool one axis."""
  rank = spatial_rank(op, window_shape=window, strides=strides) or 1
  window = as_tuple(window, rank, "window_shape", op)
  check_inexact(x, op, complex_ok=False)
  x3, batch = flatten_batch(jnp.asarray(x), rank, op)
  strides = as_tuple(strides, rank, "strides", op)
  pairs, fill, out = resolve_window(x3.shape[1:-1], window, strides, padding, (1,) * rank, op)
  return x3, batch, window, strides, pairs, fill, out


def _reduce_windows(xp, window, strides, out, reducer, reshape_reduce):
  """Reduce every window of the padded `xp` `(n, *P, C)` to `(n, *out, C)`."""
  if strides == window:
    # Non-overlapping windows: crop the unused tail, split each axis into (out, window), reduce.
    cropped = lax.slice(xp, (0,) * xp.ndim, (xp.shape[0], *(o * k for o, k in zip(out, window)), xp.shape[-1]))
    split = cropped
    for axis, (o, k) in enumerate(zip(out, window), 1):  # one axis per reshape: sharding types allow that
      split = split.reshape(*split.shape[: 2 * axis - 1], o, k, *split.shape[2 * axis :])
    return reshape_reduce(split, axis=tuple(range(2, 2 * len(window) + 1, 2)))
  taps = (strided_window_slice(xp, tap, out, strides) for tap in window_offsets(window))
  result = next(taps)
  for tap in taps:
    result = reducer(result, tap)
  return result


def _sum_pool(x, window, strides, padding, op):
  x3, batch, window, strides, pairs, fill, out = _prepare(x, window, strides, padding, op)
  y = _reduce_windows(pad_spatial(x3, pairs, fill), window, strides, out, lax.add, jnp.sum)
  return y, batch, window, strides, pairs, fill, out


def max_pool(x, window_shape, strides=None, padding="VALID"):
  """Maximum over each window of channels-last `x` `(*batch, *spatial, C)`.

  Args:
    x: `(*batch, *spatial, C)`, any number (0 included) of leading batch axes; a floating dtype
      (float16, bfloat16, float32, float64).
    window_shape: int or one int per spatial axis; its length (or that of `strides`) is the
      number of spatial axes (an int and an int stride: 1-D).
    strides: int or one int per spatial axis (default 1, as in stax and Flax: pass
      `strides=window_shape` for the usual non-overlapping pooling).
    padding: as in `funconv.ops.conv`: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`,
      `"CIRCULAR"`, `"REFLECT"`, an int or one `(low, high)` pair per spatial axis.

  Zero padding is `-inf` padding here. Ties share the gradient equally (the max of a reshaped
  window) or go to the later tap (the max of overlapping slices), where `lax.reduce_window` gives
  it to one element.

  Returns:
    `(*batch, *out_spatial, C)` in `x`'s dtype, `out = floor((W + lo + hi - K) / S) + 1` per axis.

  Raises:
    TypeError: `x` is not floating (integer, boolean or complex); a window size or stride is not
      an int.
    ValueError: a size below 1; `window_shape` and `strides` of different lengths; `x` with fewer
      than `rank + 1` axes; an unknown padding; a window larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.max_pool(jnp.ones((4, 28, 28, 8)), (2, 2), strides=(2, 2)).shape
    (4, 14, 14, 8)
    >>> x = jnp.arange(16.0).reshape(4, 4, 1)                # one 4x4 image, one channel
    >>> fc.ops.max_pool(x, (2, 2), strides=2)[..., 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
  """
  x3, batch, window, strides, pairs, fill, out = _prepare(x, window_shape, strides, padding, "max_pool")
  xp = pad_spatial(x3, pairs, fill, value=-jnp.inf)
  y = _reduce_windows(xp, window, strides, out, lax.max, jnp.max)
  return y.reshape(*batch, *y.shape[1:])


def sum_pool(x, window_shape, strides=None, padding="VALID"):
  """Sum over each window of channels-last `x` `(*batch, *spatial, C)`, padding with zeros.

  Args:
    x: `(*batch, *spatial, C)`, any number (0 included) of leading batch axes; a floating dtype
      (float16, bfloat16, float32, float64).
    window_shape: int or one int per spatial axis; its length (or that of `strides`) is the
      number of spatial axes (an int and an int stride: 1-D).
    strides: int or one int per spatial axis (default 1, as in stax and Flax: pass
      `strides=window_shape` for the usual non-overlapping pooling).
    padding: as in `funconv.ops.conv`: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`,
      `"CIRCULAR"`, `"REFLECT"`, an int or one `(low, high)` pair per spatial axis.

  Returns:
    `(*batch, *out_spatial, C)` in `x`'s dtype, `out` as in `max_pool`.

  Raises:
    TypeError: `x` is not floating (integer, boolean or complex); a window size or stride is not
      an int.
    ValueError: a size below 1; `window_shape` and `strides` of different lengths; `x` with fewer
      than `rank + 1` axes; an unknown padding; a window larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> x = jnp.arange(16.0).reshape(4, 4, 1)
    >>> fc.ops.sum_pool(x, (2, 2), strides=2)[..., 0].tolist()
    [[10.0, 18.0], [42.0, 50.0]]
  """
  y, batch, *_ = _sum_pool(x, window_shape, strides, padding, "sum_pool")
  return y.reshape(*batch, *y.shape[1:])


def avg_pool(x, window_shape, strides=None, padding="VALID", count_include_pad=True):
  """Mean over each window of channels-last `x` `(*batch, *spatial, C)`.

  Args:
    x: `(*batch, *spatial, C)`, any number (0 included) of leading batch axes; a floating dtype
      (float16, bfloat16, float32, float64).
    window_shape: int or one int per spatial axis; its length (or that of `strides`) is the
      number of spatial axes (an int and an int stride: 1-D).
    strides: int or one int per spatial axis (default 1, as in stax and Flax: pass
      `strides=window_shape` for the usual non-overlapping pooling).
    padding: as in `funconv.ops.conv`: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`,
      `"CIRCULAR"`, `"REFLECT"`, an int or one `(low, high)` pair per spatial axis.
    count_include_pad: with `True` (the default, as `lax.reduce_window` sums, Flax and PyTorch)
      every window is divided by its full size, padded zeros included; with `False`, by the number
      of input elements it covers, so border windows are true means. (`"CIRCULAR"` and
      `"REFLECT"` pad with input values: always divided by the full size.)

  Returns:
    `(*batch, *out_spatial, C)` in `x`'s dtype, `out` as in `max_pool`.

  Raises:
    TypeError: `x` is not floating (integer, boolean or complex); a window size or stride is not
      an int.
    ValueError: a size below 1; `window_shape` and `strides` of different lengths; `x` with fewer
      than `rank + 1` axes; an unknown padding; a window larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.avg_pool(jnp.ones((5, 5, 1)), (3, 3), padding="SAME")[0, 0, 0]           # 4 ones / 9
    Array(0.44444445, dtype=float32)
    >>> fc.ops.avg_pool(jnp.ones((5, 5, 1)), (3, 3), padding="SAME", count_include_pad=False)[0, 0, 0]
    Array(1., dtype=float32)
  """
  y, batch, window, strides, pairs, fill, out = _sum_pool(x, window_shape, strides, padding, "avg_pool")
  if count_include_pad or fill != "constant":
    y = y / math.prod(window)
  else:
    ones = jnp.ones((1, *jnp.shape(x)[-len(window) - 1 : -1], 1), y.dtype)
    y = y / _reduce_windows(pad_spatial(ones, pairs), window, strides, out, lax.add, jnp.sum)
  return y.reshape(*batch, *y.shape[1:])


def l2_pool(x, window_shape, strides=None, padding="VALID"):
  """`sqrt` of the sum of squares over each window of channels-last `x` `(*batch, *spatial, C)`.

  Args:
    x: `(*batch, *spatial, C)`, any number (0 included) of leading batch axes; a floating dtype
      (float16, bfloat16, float32, float64).
    window_shape: int or one int per spatial axis; its length (or that of `strides`) is the
      number of spatial axes (an int and an int stride: 1-D).
    strides: int or one int per spatial axis (default 1, as in stax and Flax: pass
      `strides=window_shape` for the usual non-overlapping pooling).
    padding: as in `funconv.ops.conv`: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`,
      `"CIRCULAR"`, `"REFLECT"`, an int or one `(low, high)` pair per spatial axis.

  At an all-zero window the gradient is 0 (the norm's smallest subgradient there) rather than
  sqrt's infinite slope times the squares' zero one (NaN): the inner `where` keeps sqrt's
  derivative away from 0, the outer one selects. Exact elsewhere.

  Returns:
    `(*batch, *out_spatial, C)` in `x`'s dtype, `out` as in `max_pool`; non-negative.

  Raises:
    TypeError: `x` is not floating (integer, boolean or complex); a window size or stride is not
      an int.
    ValueError: a size below 1; `window_shape` and `strides` of different lengths; `x` with fewer
      than `rank + 1` axes; an unknown padding; a window larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.l2_pool(jnp.full((2, 2, 1), 3.0), (2, 2))[..., 0].tolist()    # sqrt(4 * 3 ** 2)
    [[6.0]]
    >>> jax.grad(lambda x: fc.ops.l2_pool(x, (2, 2)).sum())(jnp.zeros((2, 2, 1)))[..., 0].tolist()
    [[0.0, 0.0], [0.0, 0.0]]
  """
  check_inexact(x, "l2_pool", complex_ok=False)  # before squaring, which would make a boolean x an integer one
  y, batch, *_ = _sum_pool(jnp.square(x), window_shape, strides, padding, "l2_pool")
  nonzero = y > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, y, 1)), 0).reshape(*batch, *y.shape[1:])


def _spatial(x, rank, op):
  """`x` checked to be a floating array with `rank` spatial axes and a channel axis (after any batch axes)."""
  check_inexact(x, op, complex_ok=False)
  x = jnp.asarray(x)
  flatten_batch(x, positive_int(rank, "rank", op), op)
  return x


def global_avg_pool(x, rank: int = 2):
  """Mean over the `rank` spatial axes of channels-last `x`: `(*batch, *spatial, C) -> (*batch, C)`.

  Args:
    x: `(*batch, *spatial, C)` with `rank` spatial axes after any number (0 included) of leading
      batch axes; a floating dtype.
    rank: the number of spatial axes, an int >= 1 (default 2: images).

  Returns:
    `(*batch, C)` in `x`'s dtype.

  Raises:
    TypeError: `x` is not floating; `rank` is not an int.
    ValueError: `rank < 1`, or `x` has fewer than `rank + 1` axes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.global_avg_pool(jnp.ones((8, 7, 7, 512))).shape
    (8, 512)
    >>> fc.ops.global_avg_pool(jnp.arange(6.0).reshape(3, 2), rank=1).tolist()   # a sequence of 3, 2 channels
    [2.0, 3.0]
  """
  x = _spatial(x, rank, "global_avg_pool")
  return jnp.mean(x, axis=tuple(range(x.ndim - rank - 1, x.ndim - 1)))


def global_max_pool(x, rank: int = 2):
  """Maximum over the `rank` spatial axes of channels-last `x`: `(*batch, *spatial, C) -> (*batch, C)`.

  Args:
    x: `(*batch, *spatial, C)` with `rank` spatial axes after any number (0 included) of leading
      batch axes; a floating dtype.
    rank: the number of spatial axes, an int >= 1 (default 2: images).

  Returns:
    `(*batch, C)` in `x`'s dtype.

  Raises:
    TypeError: `x` is not floating; `rank` is not an int.
    ValueError: `rank < 1`, or `x` has fewer than `rank + 1` axes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.global_max_pool(jnp.ones((8, 7, 7, 512))).shape
    (8, 512)
    >>> fc.ops.global_max_pool(jnp.arange(6.0).reshape(3, 2), rank=1).tolist()
    [4.0, 5.0]
  """
  x = _spatial(x, rank, "global_max_pool")
  return jnp.max(x, axis=tuple(range(x.ndim - rank - 1, x.ndim - 1)))


def _adaptive_weights(n_in, n_out, dtype):
  """`(n_out, n_in)` averaging matrix of adaptive pooling: bin `i` covers `[floor(i n / m), ceil((i + 1) n / m))`."""
  weights = []
  for i in range(n_out):
    start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
    weights.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(n_in)])
  return jnp.asarray(weights, dtype)


def adaptive_avg_pool(x, output_size):
  """Average pooling to a fixed spatial size, as PyTorch's `AdaptiveAvgPool`.

  Bin `i` of an axis of length `n` pooled to `m` averages the input elements
  `[floor(i n / m), ceil((i + 1) n / m))`: bins overlap where `m` does not divide `n`, and
  repeat elements where `m > n`. Computed as one small averaging matrix per spatial axis.

  Args:
    x: `(*batch, *spatial, C)`, any number of leading batch axes; a floating dtype; no empty
      spatial axis.
    output_size: int or one int per spatial axis, each >= 1; its length is the number of spatial
      axes (an int: 1-D).

  Returns:
    `(*batch, *output_size, C)` in `x`'s dtype.

  Raises:
    TypeError: `x` is not floating; `output_size` is not an int or ints.
    ValueError: a size below 1; `x` with fewer than `rank + 1` axes or an empty spatial axis.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.adaptive_avg_pool(jnp.ones((2, 13, 13, 256)), (6, 6)).shape
    (2, 6, 6, 256)
    >>> fc.ops.adaptive_avg_pool(jnp.arange(5.0).reshape(5, 1), 2)[:, 0].tolist()   # bins [0, 3) and [2, 5)
    [1.0, 3.0]
  """
  op = "adaptive_avg_pool"
  rank = spatial_rank(op, output_size=output_size) or 1
  output_size = as_tuple(output_size, rank, "output_size", op)
  x = _spatial(x, rank, op)
  if 0 in x.shape[x.ndim - rank - 1 : -1]:
    raise ValueError(f"{op}: x's spatial axes {x.shape[x.ndim - rank - 1 : -1]} must not be empty (x.shape={x.shape})")
  for i, m in enumerate(output_size):
    axis = x.ndim - rank - 1 + i
    weights = _adaptive_weights(x.shape[axis], m, x.dtype)
    x = jnp.moveaxis(jnp.tensordot(x, weights, axes=((axis,), (1,))), -1, axis)
  return x
