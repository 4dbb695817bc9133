"""Pooling layers over `funconv.ops` pooling: `(*spatial, C) -> (*out_spatial, C)` for one example.

`MaxPool`, `AvgPool`, `SumPool`, `L2Pool` and `AdaptiveAvgPool` are factories. `GlobalAvgPool` and
`GlobalMaxPool` are layer values, used without calling them, each documented by the docstring under its
definition.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.GlobalAvgPool.init(None, (7, 7, 512))[0]
  (512,)
  >>> x = jnp.arange(16.0).reshape(4, 4, 1)
  >>> fc.GlobalAvgPool.apply((), (), x)[0].tolist(), fc.GlobalMaxPool.apply((), (), x)[0].tolist()
  ([7.5], [15.0])
"""

import math

from funconv import ops
from funconv.layers.base import layer
from funconv.ops.shapes import layer_window, resolve_window


def _pool(name, op, window_shape, strides, padding, **op_kwargs):
  """A pooling layer; an int `window_shape` or `strides` means that size on every spatial axis of the input."""
  resolve = layer_window(name, window_shape=window_shape, strides=strides)

  def geometry(input_shape):
    """`(window, strides, pairs)` per spatial axis, and the spatial output shape."""
    window, strides = resolve(input_shape)
    pairs, _, out = resolve_window(input_shape[:-1], window, strides, padding, (1,) * len(window), name)
    return window, strides, pairs, out

  def init(key, input_shape):
    return (*geometry(input_shape)[3], input_shape[-1]), (), ()

  def apply(params, state, x, *, key=None, train=False):
    return op(x, *resolve(x.shape), padding, **op_kwargs), state

  return layer(
    name,
    init,
    apply,
    macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]),
    window=lambda i: [(k, s, 1, lo) for k, s, (lo, _) in zip(*geometry(i)[:3])],
  )


def MaxPool(window_shape, strides=None, padding="VALID"):
  """Max pooling: the maximum over each window (`funconv.ops.max_pool`), per channel.

  Args:
    window_shape: int (that size on every spatial axis of the input) or one int per spatial axis
      (then the input must have that many).
    strides: int or one int per spatial axis; default None: 1, as in stax (pass
      `strides=window_shape` for non-overlapping windows).
    padding: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`, `"CIRCULAR"`, `"REFLECT"`, an
      int or one `(low, high)` pair per spatial axis, as in `funconv.ops.conv`.

  Returns:
    A `Layer` without params or state: `(*spatial, C) -> (*out_spatial, C)` in `x`'s (floating)
    dtype, `out = floor((W + lo + hi - K) / S) + 1` per axis (`funconv.ops.conv_output_shape`).

  Raises:
    TypeError: a size that is not an int; in `apply`, a non-floating `x`.
    ValueError: a size below 1, or `window_shape` and `strides` of different lengths; in `init`, an
      input with a different number of spatial axes (or none), an unknown padding, or a window
      larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.MaxPool((2, 2), strides=(2, 2)).init(None, (28, 28, 16))[0]
    (14, 14, 16)
    >>> fc.MaxPool(3).init(None, (10, 4))[0]                    # an int: any rank, here 1-D, stride 1
    (8, 4)
    >>> y, _ = fc.MaxPool(2, strides=2).apply((), (), jnp.arange(16.0).reshape(4, 4, 1))
    >>> y[..., 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
  """
  return _pool("MaxPool", ops.max_pool, window_shape, strides, padding)


def AvgPool(window_shape, strides=None, padding="VALID", count_include_pad=True):
  """Average pooling: the mean over each window (`funconv.ops.avg_pool`), per channel.

  Args:
    window_shape: int (that size on every spatial axis of the input) or one int per spatial axis
      (then the input must have that many).
    strides: int or one int per spatial axis; default None: 1, as in stax (pass
      `strides=window_shape` for non-overlapping windows).
    padding: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`, `"CIRCULAR"`, `"REFLECT"`, an
      int or one `(low, high)` pair per spatial axis, as in `funconv.ops.conv`.
    count_include_pad: with True (default) padded zeros count in the divisor; with False each
      window is divided by the number of input elements it covers.

  Returns:
    A `Layer` without params or state: `(*spatial, C) -> (*out_spatial, C)` in `x`'s (floating)
    dtype, `out = floor((W + lo + hi - K) / S) + 1` per axis (`funconv.ops.conv_output_shape`).

  Raises:
    TypeError: a size that is not an int; in `apply`, a non-floating `x`.
    ValueError: a size below 1, or `window_shape` and `strides` of different lengths; in `init`, an
      input with a different number of spatial axes (or none), an unknown padding, or a window
      larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.AvgPool((3, 3), strides=(2, 2), padding="SAME").init(None, (32, 32, 8))[0]
    (16, 16, 8)
    >>> y, _ = fc.AvgPool(2, strides=2).apply((), (), jnp.arange(16.0).reshape(4, 4, 1))
    >>> y[..., 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
  """
  return _pool("AvgPool", ops.avg_pool, window_shape, strides, padding, count_include_pad=count_include_pad)


def SumPool(window_shape, strides=None, padding="VALID"):
  """Sum pooling: the sum over each window (`funconv.ops.sum_pool`), per channel, zero padded.

  Args:
    window_shape: int (that size on every spatial axis of the input) or one int per spatial axis
      (then the input must have that many).
    strides: int or one int per spatial axis; default None: 1, as in stax (pass
      `strides=window_shape` for non-overlapping windows).
    padding: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`, `"CIRCULAR"`, `"REFLECT"`, an
      int or one `(low, high)` pair per spatial axis, as in `funconv.ops.conv`.

  Returns:
    A `Layer` without params or state: `(*spatial, C) -> (*out_spatial, C)` in `x`'s (floating)
    dtype, `out = floor((W + lo + hi - K) / S) + 1` per axis (`funconv.ops.conv_output_shape`).

  Raises:
    TypeError: a size that is not an int; in `apply`, a non-floating `x`.
    ValueError: a size below 1, or `window_shape` and `strides` of different lengths; in `init`, an
      input with a different number of spatial axes (or none), an unknown padding, or a window
      larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.SumPool((2,), strides=(2,)).init(None, (100, 4))[0]
    (50, 4)
    >>> fc.SumPool(2, strides=2).apply((), (), jnp.ones((4, 1)))[0][:, 0].tolist()
    [2.0, 2.0]
  """
  return _pool("SumPool", ops.sum_pool, window_shape, strides, padding)


def L2Pool(window_shape, strides=None, padding="VALID"):
  """L2 pooling: the square root of the sum of squares over each window (`funconv.ops.l2_pool`).

  Args:
    window_shape: int (that size on every spatial axis of the input) or one int per spatial axis
      (then the input must have that many).
    strides: int or one int per spatial axis; default None: 1, as in stax (pass
      `strides=window_shape` for non-overlapping windows).
    padding: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"`, `"CIRCULAR"`, `"REFLECT"`, an
      int or one `(low, high)` pair per spatial axis, as in `funconv.ops.conv`.

  Returns:
    A `Layer` without params or state: `(*spatial, C) -> (*out_spatial, C)` in `x`'s (floating)
    dtype, `out = floor((W + lo + hi - K) / S) + 1` per axis (`funconv.ops.conv_output_shape`).

  Raises:
    TypeError: a size that is not an int; in `apply`, a non-floating `x`.
    ValueError: a size below 1, or `window_shape` and `strides` of different lengths; in `init`, an
      input with a different number of spatial axes (or none), an unknown padding, or a window
      larger than the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.L2Pool((2, 2), strides=(2, 2)).init(None, (28, 28, 16))[0]
    (14, 14, 16)
    >>> fc.L2Pool(2, strides=2).apply((), (), jnp.full((2, 2, 1), 3.0))[0].tolist()     # sqrt(4 * 9)
    [[[6.0]]]
  """
  return _pool("L2Pool", ops.l2_pool, window_shape, strides, padding)


def _global(name, op):
  def init(key, input_shape):
    if len(input_shape) < 2:
      raise ValueError(f"{name}: input_shape must be (*spatial, C), got {tuple(input_shape)}")
    return (input_shape[-1],), (), ()

  def apply(params, state, x, *, key=None, train=False):
    return op(x, rank=x.ndim - 1), state

  return layer(name, init, apply, flattens=True)


GlobalAvgPool = _global("GlobalAvgPool", ops.global_avg_pool)
"""The mean over all spatial positions: `(*spatial, C) -> (C,)`, any number (>= 1) of spatial axes.

A layer value (used without calling it); `funconv.ops.global_avg_pool`. No params or state; `x`'s dtype (floating only:
TypeError otherwise); a ValueError at `init` for an input shape with no spatial axis. It ends the spatial layout.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.GlobalAvgPool.init(None, (7, 7, 512))[0]
  (512,)
  >>> fc.GlobalAvgPool.apply((), (), jnp.arange(16.0).reshape(4, 4, 1))[0].tolist()
  [7.5]
"""
GlobalMaxPool = _global("GlobalMaxPool", ops.global_max_pool)
"""The maximum over all spatial positions: `(*spatial, C) -> (C,)`, any number (>= 1) of spatial axes.

A layer value (used without calling it); `funconv.ops.global_max_pool`. No params or state; `x`'s dtype (floating only:
TypeError otherwise); a ValueError at `init` for an input shape with no spatial axis. It ends the spatial layout.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.GlobalMaxPool.init(None, (7, 7, 512))[0]
  (512,)
  >>> fc.GlobalMaxPool.apply((), (), jnp.arange(16.0).reshape(4, 4, 1))[0].tolist()
  [15.0]
"""


def AdaptiveAvgPool(output_size):
  """Average pooling to a fixed spatial `output_size`, whatever the input size (PyTorch's
  `AdaptiveAvgPool`; AlexNet and VGG use it before their classifiers); `funconv.ops.adaptive_avg_pool`.

  Args:
    output_size: int (that size on every spatial axis of the input) or one int per spatial axis,
      each >= 1.

  Returns:
    A `Layer` without params or state: `(*spatial, C) -> (*output_size, C)` in `x`'s (floating)
    dtype. Bin `i` of an axis of length `n` averages `[floor(i n / m), ceil((i + 1) n / m))`.

  Raises:
    TypeError: a size that is not an int; in `apply`, a non-floating `x`.
    ValueError: a size below 1; in `init`, an input with a different number of spatial axes (or
      none) or an empty spatial axis.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.AdaptiveAvgPool((6, 6)).init(None, (13, 13, 256))[0]
    (6, 6, 256)
    >>> fc.AdaptiveAvgPool(1).init(None, (5, 5, 3))[0]
    (1, 1, 3)
  """
  resolve = layer_window("AdaptiveAvgPool", output_size=output_size)  # an int: that size on every spatial axis

  def init(key, input_shape):
    (output_size,) = resolve(input_shape)
    if 0 in input_shape[:-1]:
      raise ValueError(f"AdaptiveAvgPool: input_shape {tuple(input_shape)} has an empty spatial axis")
    return (*output_size, input_shape[-1]), (), ()

  def apply(params, state, x, *, key=None, train=False):
    return ops.adaptive_avg_pool(x, *resolve(x.shape)), state

  return layer("AdaptiveAvgPool", init, apply, macs=lambda i, o: math.prod(i))
