"""Convolution layers over `funconv.ops` (never the native convolution)."""
import math

import jax
import jax.numpy as jnp
from jax.nn import initializers

from funconv import ops
from funconv.layers.base import check_dtypes, layer, promote, trailing
from funconv.ops.shapes import (check_groups, conv_transpose_output_shape, layer_window, positive_int, resolve_padding,
                                resolve_window, transpose_padding)


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


def Conv(out_chan, filter_shape, strides=None, padding="VALID", W_init=None, b_init=None, *,
         dilation=None, groups=1, use_bias=True, dtype=None, param_dtype=jnp.float32):
  """N-d convolution layer (the rank of `filter_shape`): `(*spatial, C_in) -> (*out, out_chan)`.

  Params `(W, b)`: `W` `(*filter_shape, C_in // groups, out_chan)` (HWIO), `b` `(out_chan,)`;
  `(W,)` with `use_bias=False`. `strides`, `padding`, `dilation` and `groups` as in
  `funconv.ops.conv`. Defaults: `W_init = he_normal()` (fan-in `prod(filter_shape) * C_in //
  groups`, suited to ReLU networks; PyTorch's default is a scaled uniform of the same fan-in),
  `b_init = zeros`. `init` creates the params in `param_dtype`; `apply` casts `x` and the
  params to `dtype` and computes and returns in it, `dtype=None` meaning their result type
  (`jnp.result_type(x, W, b)`, as Flax; the convolution accumulates 16-bit floats in float32).
  An int `filter_shape` (or `strides`, `dilation`) means that size on every spatial axis: `Conv(8, 3)`
  is 3x3 on images, 3 on sequences.

  Example:
    >>> out_shape, (W, b), state = Conv(16, (3, 3), padding="SAME").init(jax.random.key(0), (28, 28, 1))
    >>> out_shape, W.shape
    ((28, 28, 16), (3, 3, 1, 16))
  """
  positive_int(out_chan, "out_chan", "Conv")
  positive_int(groups, "groups", "Conv")
  resolve, W_init, b_init = _normalise("Conv", filter_shape, strides, dilation, W_init, b_init,
                                       dict(dtype=dtype, param_dtype=param_dtype))

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

  return layer("Conv", init, apply, param_names=("W", "b"),
               macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]) * i[-1] // groups,
               window=lambda i: _window_geometry(i, resolve, padding, "Conv"))


def _conv_out_shape(input_shape, window, strides, padding, dilation, out_chan, name):
  return (*resolve_window(input_shape[:-1], window, strides, padding, dilation, name)[2], out_chan)


def ConvTranspose(out_chan, filter_shape, strides=None, padding="VALID", W_init=None, b_init=None, *,
                  dilation=None, use_bias=True, dtype=None, param_dtype=jnp.float32):
  """Transposed convolution layer (a decoder's upsampling): `(*spatial, C_in) -> (*out, out_chan)`.

  Params `(W, b)` with `W` `(*filter_shape, C_in, out_chan)`; semantics and output size as
  `funconv.ops.conv_transpose` (`"SAME"` multiplies each spatial size by its stride). `dtype`
  and `param_dtype` as in `Conv`.

  Example:
    >>> ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME").init(jax.random.key(0), (16, 16, 8))[0]
    (32, 32, 3)
  """
  positive_int(out_chan, "out_chan", "ConvTranspose")
  resolve, W_init, b_init = _normalise("ConvTranspose", filter_shape, strides, dilation, W_init, b_init,
                                       dict(dtype=dtype, param_dtype=param_dtype))

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

  return layer("ConvTranspose", init, apply, param_names=("W", "b"),
               macs=lambda i, o: math.prod(i) * math.prod(resolve(i)[0]) * out_chan)


def DepthwiseConv(filter_shape, depth_multiplier=1, strides=None, padding="VALID", W_init=None, b_init=None, *,
                  dilation=None, use_bias=True, dtype=None, param_dtype=jnp.float32):
  """Per-channel convolution: `Conv(C * depth_multiplier, filter_shape, groups=C)` with `C` the
  input channels, known at `init`. Params `(W, b)` with `W` `(*filter_shape, 1, C * depth_multiplier)`.
  `dtype` and `param_dtype` as in `Conv`.

  Example:
    >>> DepthwiseConv((3, 3), padding="SAME").init(jax.random.key(0), (32, 32, 16))[0]
    (32, 32, 16)
  """
  positive_int(depth_multiplier, "depth_multiplier", "DepthwiseConv")
  resolve, W_init, b_init = _normalise("DepthwiseConv", filter_shape, strides, dilation, W_init, b_init,
                                       dict(dtype=dtype, param_dtype=param_dtype))

  def init(key, input_shape):
    window, strides_, dilation_ = resolve(input_shape)
    channels = input_shape[-1]
    out = _conv_out_shape(input_shape, window, strides_, padding, dilation_, channels * depth_multiplier,
                          "DepthwiseConv")
    return out, _kernel_and_bias(key, (*window, 1, out[-1]), W_init, b_init, use_bias, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("DepthwiseConv", dtype, x, *params)
    y = ops.conv(x, params[0], strides, padding, dilation, groups=x.shape[-1])
    return (y + trailing(params[1], y) if use_bias else y), state

  return layer("DepthwiseConv", init, apply, param_names=("W", "b"),
               macs=lambda i, o: math.prod(o) * math.prod(resolve(i)[0]),
               window=lambda i: _window_geometry(i, resolve, padding, "DepthwiseConv"))


def SeparableConv(out_chan, filter_shape, depth_multiplier=1, strides=None, padding="VALID", *, dilation=None,
                  use_bias=True, dtype=None, param_dtype=jnp.float32):
  """Depthwise-separable convolution (MobileNet, Xception): `DepthwiseConv` without bias, then a
  pointwise `Conv(out_chan, (1,) * rank)`. Params `((W_depthwise,), (W_pointwise, b))`. `dtype`
  and `param_dtype` apply to both, as in `Conv`.

  Example:
    >>> SeparableConv(64, (3, 3), padding="SAME").init(jax.random.key(0), (32, 32, 16))[0]
    (32, 32, 64)
  """
  from funconv.combinators import serial  # combinators import the layers package: import here, not at the top
  dtypes = dict(dtype=dtype, param_dtype=param_dtype)
  positive_int(out_chan, "out_chan", "SeparableConv")   # checked under this layer's name, before its parts
  positive_int(depth_multiplier, "depth_multiplier", "SeparableConv")
  _normalise("SeparableConv", filter_shape, strides, dilation, None, None, dtypes)
  return serial(DepthwiseConv(filter_shape, depth_multiplier, strides, padding, dilation=dilation, use_bias=False,
                              **dtypes),
                Conv(out_chan, 1, use_bias=use_bias, **dtypes))
