"""Layers made of layers with the combinators: `SeparableConv`."""

import jax.numpy as jnp

from funconv.combinators import serial
from funconv.layers.base import check_dtypes
from funconv.layers.conv import Conv, DepthwiseConv
from funconv.ops.shapes import layer_window, positive_int


def SeparableConv(
  out_chan,
  filter_shape,
  depth_multiplier=1,
  strides=None,
  padding="VALID",
  *,
  dilation=None,
  use_bias=True,
  dtype=None,
  param_dtype=jnp.float32,
):
  """Depthwise-separable convolution (MobileNet, Xception): a depthwise convolution, then a pointwise one.

  `serial(DepthwiseConv(filter_shape, depth_multiplier, strides, padding, dilation=dilation, use_bias=False),
  Conv(out_chan, 1, use_bias=use_bias))`: per example `(*spatial, C_in) -> (*out_spatial, out_chan)`, with
  `out_spatial` as `Conv`'s for `filter_shape`, `strides`, `padding` and `dilation`. No activation or
  normalisation between the two (add them with `serial` and two layers where wanted).

  Params `((W_depthwise,), (W_pointwise, b))`: `W_depthwise` of shape `(*window, 1, C_in * depth_multiplier)`,
  `W_pointwise` `(1, ..., 1, C_in * depth_multiplier, out_chan)`, `b` `(out_chan,)` (`(W_pointwise,)` with
  `use_bias=False`): `prod(window) * C_in * m + C_in * m * out_chan` weights against a full `Conv`'s
  `prod(window) * C_in * out_chan`. State `((), ())`.

  Args:
    out_chan: output channels of the pointwise convolution, an int >= 1.
    filter_shape: the depthwise window, an int (that size on every spatial axis) or one int per
      spatial axis.
    depth_multiplier: depthwise filters per input channel, an int >= 1 (default 1).
    strides: the depthwise convolution's strides, int or one per spatial axis (default None: 1).
    padding: the depthwise convolution's padding, as in `Conv` (default `"VALID"`).
    dilation: the depthwise kernel's dilation (default None: 1).
    use_bias: give the pointwise convolution a bias (default True; the depthwise one has none).
    dtype: the compute and output dtype of both, as in `Conv` (default None: the result type).
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer` (a `serial` of two).

  Raises:
    TypeError: as `Conv`, naming `SeparableConv` for its own arguments.
    ValueError: as `Conv` and `DepthwiseConv`, naming `SeparableConv` for its own arguments.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> sep = fc.SeparableConv(64, (3, 3), padding="SAME")
    >>> out_shape, params, state = sep.init(jax.random.key(0), (32, 32, 16))
    >>> out_shape, params[0][0].shape, params[1][0].shape, params[1][1].shape
    ((32, 32, 64), (3, 3, 1, 16), (1, 1, 16, 64), (64,))
    >>> fc.batched(sep.apply)(params, state, jnp.ones((2, 32, 32, 16)))[0].shape
    (2, 32, 32, 64)
    >>> fc.summary(sep, (32, 32, 16), print_fn=None)["params"], 3 * 3 * 16 * 64 + 64   # against a full Conv's
    (1232, 9280)
  """
  dtypes = dict(dtype=dtype, param_dtype=param_dtype)
  positive_int(out_chan, "out_chan", "SeparableConv")  # checked under this layer's name, before its parts
  positive_int(depth_multiplier, "depth_multiplier", "SeparableConv")
  check_dtypes("SeparableConv", **dtypes)
  layer_window("SeparableConv", filter_shape=filter_shape, strides=strides, dilation=dilation)
  return serial(
    DepthwiseConv(filter_shape, depth_multiplier, strides, padding, dilation=dilation, use_bias=False, **dtypes),
    Conv(out_chan, 1, use_bias=use_bias, **dtypes),
  )
