"""Convolution layers over `funconv.ops` (never the native convolution)."""

import math

import jax
import jax.numpy as jnp
from jax.nn import initializers

from funconv import ops
from funconv.layers.base import check_dtypes, layer, promote, trailing
from funconv.ops.shapes import (
  check_groups,
  conv_transpose_output_shape,
  layer_window,
  positive_int,
  resolve_padding,
  resolve_window,
  transpose_padding,
)


def _normalise(name, filter_shape, strides, dilation, W_init, b_init, dtypes):
  """Checks the window and dtype arguments; returns `(resolve, W_init, b_init)` with the documented defaults,
  `resolve(input_shape)` giving `(window, strides, dilation)` per spatial axis (`layer_window`: an int
  `filter_shape` means that size on every spatial axis of the input)."""
  check_dtypes(name, **dtypes)
  resolve = layer_window(name, filter_shape=filter_shape, strides=strides, dilation=dilation)
  return resolve, W_init or initializers.he_normal(), b_init or initializers.zeros


def _kernel_and_bias(key, kernel_shape, W_init, b_init, use_bias, param_dtype):
  k1, k2 = jax.random.split(key)
  W = W_init(k1, kernel_shape, param_dtype)
  return (W, b_init(k2, kernel_shape[-1:], param_dtype)) if use_bias else (W,)


def _window_geometry(input_shape, resolve, padding, name):
  """Receptive-field geometry per spatial axis: (kernel, stride, dilation, low pad)."""
  window, strides, dilation = resolve(input_shape)
  pairs, _ = resolve_padding(padding, input_shape[:-1], window, strides, dilation, name)
  return [(k, s, d, lo) for k, s, d, (lo, _) in zip(window, strides, dilation, pairs)]


def Conv(
  out_chan,
  filter_shape,
  strides=None,
  padding="VALID",
  W_init=None,
  b_init=None,
  *,
  dilation=None,
  groups=1,
  use_bias=True,
  dtype=None,
  param_dtype=jnp.float32,
):
  """N-d convolution layer (cross-correlation) over `funconv.ops.conv`: `(*spatial, C_in) -> (*out_spatial, out_chan)`.

  Per example, channels last, no batch axis (map it over a batch with `funconv.batched`). The
  spatial rank is that of `filter_shape` (1, 2, 3 or more), or, for an int `filter_shape` (and
  int or None `strides` and `dilation`), the input's: `Conv(8, 3)` is 3x3 on images, 3 on
  sequences. `out_spatial = floor((W + lo + hi - D (K - 1) - 1) / S) + 1` per axis, with the
  padding `(lo, hi)` that `padding` gives.

  Params `(W, b)`: `W` of shape `(*window, C_in // groups, out_chan)` (HWIO), `b` `(out_chan,)`;
  `(W,)` with `use_bias=False`. State `()`.

  Args:
    out_chan: output channels, an int >= 1.
    filter_shape: the window, an int (that size on every spatial axis) or one int per spatial
      axis.
    strides: int or one per spatial axis (default None: 1).
    padding: as in `funconv.ops.conv`: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`,
      `"CAUSAL"` (1-D), `"CIRCULAR"`, `"REFLECT"`, an int, or one `(low, high)` pair per spatial
      axis.
    W_init: `W_init(key, shape, dtype)`, a `jax.nn.initializers` initializer (default None:
      `he_normal()`, fan-in `prod(window) * C_in // groups`, suited to ReLU networks; PyTorch's
      default is a scaled uniform of the same fan-in).
    b_init: the bias's initializer (default None: zeros).
    dilation: kernel dilation, int or one per spatial axis (default None: 1).
    groups: feature groups (default 1); `C_in` and `out_chan` must both divide by it.
    use_bias: add a learned bias (default True).
    dtype: the dtype `apply` casts `x` and the params to, computes and returns in (default None:
      their result type `jnp.result_type(x, W, b)`, as Flax; the convolution accumulates 16-bit
      floats in float32).
    param_dtype: the dtype `init` creates the params in (default float32).

  Returns:
    A `Layer`.

  Raises:
    TypeError: (at construction) `out_chan`, `groups`, `filter_shape`, `strides` or `dilation`
      is not an int (or ints); `dtype` or `param_dtype` is not a floating or complex dtype.
      (`apply`) `x` has an integer or boolean dtype.
    ValueError: (at construction) a size below 1, or window arguments of different ranks. (`init`)
      an input whose spatial rank is not the window's, or with no spatial axis; `groups` not
      dividing the input channels; an unknown padding; a window larger than the padded input.
      (`apply`) params or state that differ from what `init` makes for `x`'s shape.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> conv = fc.Conv(16, (3, 3), padding="SAME")
    >>> out_shape, (W, b), state = conv.init(jax.random.key(0), (28, 28, 1))
    >>> out_shape, W.shape, b.shape, state
    ((28, 28, 16), (3, 3, 1, 16), (16,), ())
    >>> y, state = conv.apply((W, b), state, jnp.ones((28, 28, 1)))         # one example
    >>> y.shape, y.dtype
    ((28, 28, 16), dtype('float32'))
    >>> fc.batched(conv.apply)((W, b), state, jnp.ones((8, 28, 28, 1)))[0].shape
    (8, 28, 28, 16)
    >>> fc.Conv(8, 5, strides=2, groups=4, use_bias=False).init(jax.random.key(0), (100, 16))[0]   # 1-D
    (48, 8)
  """
  positive_int(out_chan, "out_chan", "Conv")
  positive_int(groups, "groups", "Conv")
  resolve, W_init, b_init = _normalise(
    "Conv", filter_shape, strides, dilation, W_init, b_init, dict(dtype=dtype, param_dtype=param_dtype)
  )

  def init(key, input_shape):
    window, strides_, dilation_ = resolve(input_shape)
    channels = input_shape[-1]
    check_groups(channels, out_chan, groups, "Conv", f" (input_shape {tuple(input_shape)})")
    out = _conv_out_shape(input_shape, window, strides_, padding, dilation_, out_chan, "Conv")
    kernel_shape = (*window, channels // groups, out_chan)
    return out, _kernel_and_bias(key, kernel_shape, W_init, b_init, use_bias, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("Conv", dtype, x, *params)
    y = ops.conv(x, params[0], strides, padding, dilation, groups)
    return (y + trailing(params[1], y) if use_bias else y), state

  return layer(
    "Conv",
    init,
    apply,
    param_names=("W", "b"),
    macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]) * i[-1] // groups,
    window=lambda i: _window_geometry(i, resolve, padding, "Conv"),
  )


def _conv_out_shape(input_shape, window, strides, padding, dilation, out_chan, name):
  return (*resolve_window(input_shape[:-1], window, strides, padding, dilation, name)[2], out_chan)


def ConvTranspose(
  out_chan,
  filter_shape,
  strides=None,
  padding="VALID",
  W_init=None,
  b_init=None,
  *,
  dilation=None,
  use_bias=True,
  dtype=None,
  param_dtype=jnp.float32,
):
  """Transposed convolution layer (a decoder's upsampling) over `funconv.ops.conv_transpose`:
  `(*spatial, C_in) -> (*out_spatial, out_chan)`.

  Per example, channels last, no batch axis. Semantics and output size as
  `funconv.ops.conv_transpose` (`lax.conv_transpose` with `transpose_kernel=False`): `"SAME"`
  gives `out_spatial = W * S`, `"VALID"` `W * S + max(K' - S, 0)` with `K' = D (K - 1) + 1`.
  The spatial rank is `filter_shape`'s, or the input's for int arguments, as in `Conv`.

  Params `(W, b)`: `W` of shape `(*window, C_in, out_chan)`, `b` `(out_chan,)`; `(W,)` with
  `use_bias=False`. State `()`. `receptive_field` does not account for this layer's geometry.

  Args:
    out_chan: output channels, an int >= 1.
    filter_shape: the window, an int or one int per spatial axis.
    strides: the upsampling factor, int or one per spatial axis (default None: 1).
    padding: `"VALID"` (default), `"SAME"`, an int or one `(low, high)` pair per spatial axis
      padding the spread input (see `funconv.ops.transpose_padding`).
    W_init: the kernel's initializer (default None: `he_normal()`).
    b_init: the bias's initializer (default None: zeros).
    dilation: kernel dilation, int or one per spatial axis (default None: 1).
    use_bias: add a learned bias (default True).
    dtype: the compute and output dtype, as in `Conv` (default None: the result type).
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer`.

  Raises:
    TypeError: as `Conv`.
    ValueError: as `Conv`; (`init`) padding that leaves no output.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> up = fc.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME")
    >>> out_shape, (W, b), state = up.init(jax.random.key(0), (16, 16, 8))
    >>> out_shape, W.shape, b.shape
    ((32, 32, 3), (4, 4, 8, 3), (3,))
    >>> fc.batched(up.apply)((W, b), state, jnp.ones((2, 16, 16, 8)))[0].shape
    (2, 32, 32, 3)
    >>> fc.ConvTranspose(3, (4, 4), strides=(2, 2)).init(jax.random.key(0), (16, 16, 8))[0]   # VALID: 16 * 2 + 2
    (34, 34, 3)
  """
  positive_int(out_chan, "out_chan", "ConvTranspose")
  resolve, W_init, b_init = _normalise(
    "ConvTranspose", filter_shape, strides, dilation, W_init, b_init, dict(dtype=dtype, param_dtype=param_dtype)
  )

  def init(key, input_shape):
    window, strides_, dilation_ = resolve(input_shape)
    pairs = transpose_padding(window, strides_, dilation_, padding, "ConvTranspose")
    out = conv_transpose_output_shape(input_shape[:-1], window, strides_, pairs, dilation_)
    if any(o < 1 for o in out):
      raise ValueError(f"ConvTranspose: padding {pairs} leaves no output for input_shape {tuple(input_shape)}")
    kernel_shape = (*window, input_shape[-1], out_chan)
    return (*out, out_chan), _kernel_and_bias(key, kernel_shape, W_init, b_init, use_bias, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("ConvTranspose", dtype, x, *params)
    y = ops.conv_transpose(x, params[0], strides, padding, dilation)
    return (y + trailing(params[1], y) if use_bias else y), state

  return layer(
    "ConvTranspose",
    init,
    apply,
    param_names=("W", "b"),
    macs=lambda i, o: math.prod(i) * math.prod(resolve(i)[0]) * out_chan,
  )


def DepthwiseConv(
  filter_shape,
  depth_multiplier=1,
  strides=None,
  padding="VALID",
  W_init=None,
  b_init=None,
  *,
  dilation=None,
  use_bias=True,
  dtype=None,
  param_dtype=jnp.float32,
):
  """Per-channel (depthwise) convolution layer: `(*spatial, C) -> (*out_spatial, C * depth_multiplier)`.

  `Conv(C * depth_multiplier, filter_shape, groups=C)` with `C` the input channels, known at
  `init`: each input channel is convolved with its own `depth_multiplier` filters, output
  channel `c * depth_multiplier + m` from input channel `c`. `out_spatial` as in `Conv`.

  Params `(W, b)`: `W` of shape `(*window, 1, C * depth_multiplier)`, `b`
  `(C * depth_multiplier,)`; `(W,)` with `use_bias=False`. State `()`.

  Args:
    filter_shape: the window, an int (that size on every spatial axis) or one int per spatial
      axis.
    depth_multiplier: output channels per input channel, an int >= 1 (default 1).
    strides: int or one per spatial axis (default None: 1).
    padding: as in `Conv` (default `"VALID"`).
    W_init: the kernel's initializer (default None: `he_normal()`, fan-in `prod(window)`).
    b_init: the bias's initializer (default None: zeros).
    dilation: kernel dilation, int or one per spatial axis (default None: 1).
    use_bias: add a learned bias (default True).
    dtype: the compute and output dtype, as in `Conv` (default None: the result type).
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer`.

  Raises:
    TypeError: as `Conv`.
    ValueError: as `Conv`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> dw = fc.DepthwiseConv((3, 3), depth_multiplier=2, padding="SAME")
    >>> out_shape, (W, b), state = dw.init(jax.random.key(0), (32, 32, 16))
    >>> out_shape, W.shape, b.shape
    ((32, 32, 32), (3, 3, 1, 32), (32,))
    >>> fc.batched(dw.apply)((W, b), state, jnp.ones((4, 32, 32, 16)))[0].shape
    (4, 32, 32, 32)
  """
  positive_int(depth_multiplier, "depth_multiplier", "DepthwiseConv")
  resolve, W_init, b_init = _normalise(
    "DepthwiseConv", filter_shape, strides, dilation, W_init, b_init, dict(dtype=dtype, param_dtype=param_dtype)
  )

  def init(key, input_shape):
    window, strides_, dilation_ = resolve(input_shape)
    channels = input_shape[-1]
    out = _conv_out_shape(
      input_shape, window, strides_, padding, dilation_, channels * depth_multiplier, "DepthwiseConv"
    )
    return out, _kernel_and_bias(key, (*window, 1, out[-1]), W_init, b_init, use_bias, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("DepthwiseConv", dtype, x, *params)
    y = ops.conv(x, params[0], strides, padding, dilation, groups=x.shape[-1])
    return (y + trailing(params[1], y) if use_bias else y), state

  return layer(
    "DepthwiseConv",
    init,
    apply,
    param_names=("W", "b"),
    macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]),
    window=lambda i: _window_geometry(i, resolve, padding, "DepthwiseConv"),
  )
