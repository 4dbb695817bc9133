"""Pooling layers over `funconv.ops` pooling."""
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

  return layer(name, init, apply, macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]),
               window=lambda i: [(k, s, 1, lo) for k, s, (lo, _) in zip(*geometry(i)[:3])])


def MaxPool(window_shape, strides=None, padding="VALID"):
  """Max pooling; `strides` defaults to 1 as in stax (pass `strides=window_shape` to tile).

  Example:
    >>> MaxPool((2, 2), strides=(2, 2)).init(None, (28, 28, 16))[0]
    (14, 14, 16)
  """
  return _pool("MaxPool", ops.max_pool, window_shape, strides, padding)


def AvgPool(window_shape, strides=None, padding="VALID", count_include_pad=True):
  """Average pooling; padded zeros count in the divisor unless `count_include_pad=False`.

  Example:
    >>> AvgPool((3, 3), strides=(2, 2), padding="SAME").init(None, (32, 32, 8))[0]
    (16, 16, 8)
  """
  return _pool("AvgPool", ops.avg_pool, window_shape, strides, padding, count_include_pad=count_include_pad)


def SumPool(window_shape, strides=None, padding="VALID"):
  """Sum pooling: the sum over each window (arguments as `MaxPool`).

  Example:
    >>> SumPool((2,), strides=(2,)).init(None, (100, 4))[0]
    (50, 4)
  """
  return _pool("SumPool", ops.sum_pool, window_shape, strides, padding)


def L2Pool(window_shape, strides=None, padding="VALID"):
  """L2 pooling: square root of the sum of squares over each window (arguments as `MaxPool`).

  Example:
    >>> L2Pool((2, 2), strides=(2, 2)).init(None, (28, 28, 16))[0]
    (14, 14, 16)
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
# GlobalAvgPool: Mean over all spatial positions: `(*spatial, C) -> (C,)`.
GlobalMaxPool = _global("GlobalMaxPool", ops.global_max_pool)
# GlobalMaxPool: Maximum over all spatial positions: `(*spatial, C) -> (C,)`.


def AdaptiveAvgPool(output_size):
  """Average pooling to a fixed spatial `output_size`, whatever the input size (PyTorch's
  `AdaptiveAvgPool`; AlexNet and VGG use it before their classifiers).

  Example:
    >>> AdaptiveAvgPool((6, 6)).init(None, (13, 13, 256))[0]
    (6, 6, 256)
  """
  resolve = layer_window("AdaptiveAvgPool", output_size=output_size)   # an int: that size on every spatial axis

  def init(key, input_shape):
    output_size, = resolve(input_shape)
    if 0 in input_shape[:-1]:
      raise ValueError(f"AdaptiveAvgPool: input_shape {tuple(input_shape)} has an empty spatial axis")
    return (*output_size, input_shape[-1]), (), ()

  def apply(params, state, x, *, key=None, train=False):
    return ops.adaptive_avg_pool(x, *resolve(x.shape)), state

  return layer("AdaptiveAvgPool", init, apply, macs=lambda i, o: math.prod(i))
