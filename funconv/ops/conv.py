"""`conv` and `conv_transpose`: argument checks and shape rules, then one bind of funconv's
convolution primitives (`funconv.ops.primitives`); the algorithms are in `funconv.ops.algorithms`,
chosen per call by `funconv.ops.plan`."""

import jax.numpy as jnp

from funconv.ops import winograd
from funconv.ops.algorithms import flipped_kernel
from funconv.ops.padding import pad_spatial
from funconv.ops.plan import FORWARD_ALGORITHMS, ConvSpec
from funconv.ops.primitives import bind, conv_input_grad_p, conv_p
from funconv.ops.shapes import (
  as_tuple,
  check_groups,
  check_inexact,
  conv_transpose_output_shape,
  flatten_batch,
  resolve_window,
  transpose_padding,
  window_reach,
)


def _operands(x, w, op, kernel_shape):
  """Checked operands in their common dtype: `(x3, batch, w, rank)`, `x3` with one batch axis.

  The spatial rank is the kernel's: `w` has shape `kernel_shape`, `(*window, ..., ...)`.
  """
  rank = jnp.ndim(w) - 2
  if rank < 1 or 0 in jnp.shape(w)[:rank]:
    raise ValueError(f"{op}: kernel w must have shape {kernel_shape} with a non-empty window, got {jnp.shape(w)}")
  check_inexact(x, op, "x")
  check_inexact(w, op, "w")
  dtype = jnp.result_type(x, w)
  x3, batch = flatten_batch(jnp.asarray(x, dtype), rank, op)
  return x3, batch, jnp.asarray(w, dtype), rank


def _check_algorithm(spec: ConvSpec, op):
  if spec.algorithm is not None and spec.algorithm not in FORWARD_ALGORITHMS:
    raise ValueError(f"{op}: unknown algorithm {spec.algorithm!r}; expected None or one of {FORWARD_ALGORITHMS}")
  if spec.algorithm == "winograd" and not winograd.applies(spec.window, spec.strides, spec.dilation, spec.groups):
    raise ValueError(
      f"{op}: algorithm 'winograd' computes ungrouped convolutions with 3-tap windows, stride 1 and "
      f"no dilation; got window {spec.window}, strides {spec.strides}, dilation {spec.dilation}, "
      f"groups {spec.groups}"
    )


def conv_spec(x3, w, strides, dilation, groups, pairs, fill="constant", algorithm=None, precision=None):
  """The `ConvSpec` of a convolution of `x3` `(n, *spatial, C)` with `w`, its input padded by `pairs`."""
  return ConvSpec(
    tuple(x3.shape[1:-1]),
    tuple(w.shape[:-2]),
    tuple(strides),
    tuple(dilation),
    groups,
    tuple(tuple(p) for p in pairs),
    fill,
    algorithm,
    precision,
  )


def conv(x, w, strides=None, padding="VALID", dilation=None, groups: int = 1, *, algorithm=None, precision=None):
  """N-d convolution (cross-correlation, as in deep learning) of channels-last `x` with kernel `w`.

  A JAX primitive (`funconv.ops.primitives.conv_p`): every transformation applies (`grad`, `jvp`,
  `vmap` over `x`, `w` or both, `hessian`, `linearize`, `linear_transpose`, ...). A stride-1
  dilated convolution that the plan runs by phases lowers to the undilated convolution of the
  input's phases, rearranged by reshapes and transposes (`funconv.ops.phases`).

  Args:
    x: `(*batch, *spatial, C_in)`, any number (0 included) of leading batch axes; a floating
      (float16, bfloat16, float32, float64) or complex dtype.
    w: `(*window, C_in // groups, C_out)` ("HWIO"); the window's rank (1, 2 or 3, or more) is
      the number of spatial axes.
    strides: int or one int per spatial axis (default 1).
    padding: `"VALID"` (default), `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"` (1-D), `"CIRCULAR"`,
      `"REFLECT"`, an int, or one `(low, high)` pair per spatial axis (see
      `funconv.ops.resolve_padding`).
    dilation: kernel dilation, int or one per spatial axis (default 1).
    groups: feature groups (default 1); `C_in` and `C_out` must both divide by it. `groups == C_in`
      is a depthwise convolution (with channel multiplier `C_out // C_in`).
    algorithm: `None` (default: chosen by shape, see docs/convolution.md), `"im2col"` (one GEMM on
      the patch matrix), `"products"` (one GEMM of every position with every tap, slid into
      place), `"hybrid"` (im2col over the leading spatial axes, products over the last),
      `"shifted"` (one GEMM per kernel tap) or `"winograd"` (3-tap windows, stride 1, no
      dilation, no groups). Results agree to float rounding.
    precision: passed to every `lax.dot_general` (default None).

  Returns:
    `(*batch, *out_spatial, C_out)` in the dtype `jnp.result_type(x, w)` (16-bit floats
    accumulate in float32), with `out = floor((W + lo + hi - D (K - 1) - 1) / S) + 1`. Equal, to
    float rounding, to `lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation,
    feature_group_count=groups, dimension_numbers=("NHWC", "HWIO", "NHWC"))`.

  Raises:
    TypeError: `x` or `w` has an integer or boolean dtype; `strides`, `dilation` or `groups` is not
      an int (or ints).
    ValueError: `w` has fewer than 3 axes or an empty window; `x` has fewer than `rank + 1` axes;
      `groups` does not divide the channels or `C_in != groups * w.shape[-2]`; a wrong number of
      strides, dilations or padding pairs; an unknown padding or algorithm; a window larger than
      the padded input.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> x = jnp.ones((8, 28, 28, 1)); w = jnp.ones((3, 3, 1, 16))
    >>> fc.ops.conv(x, w, padding="SAME").shape
    (8, 28, 28, 16)
    >>> fc.ops.conv(jnp.ones((5, 1)), jnp.ones((3, 1, 1)))[:, 0].tolist()   # 1-D, no batch axis: 3-tap sums
    [3.0, 3.0, 3.0]
  """
  op = "conv"
  x3, batch, w, rank = _operands(x, w, op, "(*window, C_in // groups, C_out)")
  window = w.shape[:rank]
  check_groups(x3.shape[-1], w.shape[-1], groups, op, f" (x.shape={jnp.shape(x)}, w.shape={w.shape})", w.shape[-2])
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  pairs, fill, _ = resolve_window(x3.shape[1:-1], window, strides, padding, dilation, op)
  spec = conv_spec(x3, w, strides, dilation, groups, pairs, fill, algorithm, precision)
  _check_algorithm(spec, op)
  y = bind(conv_p, x3, w, spec=spec)
  return y.reshape(*batch, *y.shape[1:])


def conv_transpose(x, w, strides=None, padding="VALID", dilation=None, *, algorithm=None, precision=None):
  """Transposed ("fractionally strided") convolution: a decoder's upsampling layer.

  Agrees with `lax.conv_transpose(x, w, strides, padding, rhs_dilation=dilation,
  dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=False)`: `x` spread with
  `S - 1` zeros between elements, padded, then correlated with `w`. Computed as the input
  gradient of the convolution it transposes (`conv_input_grad_p`), without the spreading: each
  input element's product with each kernel tap is added in place (col2im).

  Args:
    x: `(*batch, *spatial, C_in)`, any number of leading batch axes; floating or complex.
    w: `(*window, C_in, C_out)`; the window's rank is the number of spatial axes.
    strides: the upsampling factor, int or one per spatial axis (default 1).
    padding: `"SAME"` (output `W * S`), `"VALID"` (default; output `W * S + max(K' - S, 0)`, with
      `K' = D (K - 1) + 1`), an int or one `(low, high)` pair per axis padding the spread input
      (`lax.conv_transpose` conventions; see `funconv.ops.transpose_padding`).
    dilation: kernel dilation, int or one per spatial axis (default 1).
    algorithm: as in `conv` (default None: chosen by shape).
    precision: passed to every `lax.dot_general` (default None).

  Returns:
    `(*batch, *out_spatial, C_out)` in `jnp.result_type(x, w)`, with
    `out = S (W - 1) + 1 + lo + hi - D (K - 1)` (`funconv.ops.conv_transpose_output_shape`).

  Raises:
    TypeError: `x` or `w` is not floating or complex.
    ValueError: `w` has fewer than 3 axes or an empty window; `x`'s channels differ from
      `w.shape[-2]`; an unknown padding; padding that leaves no output.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.ops.conv_transpose(jnp.ones((2, 16, 16, 8)), jnp.ones((4, 4, 8, 3)), strides=2, padding="SAME").shape
    (2, 32, 32, 3)
    >>> fc.ops.conv_transpose(jnp.ones((3, 1)), jnp.ones((2, 1, 1)), strides=2)[:, 0].tolist()   # VALID: 3 * 2 + 0
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  """
  op = "conv_transpose"
  x3, batch, w, rank = _operands(x, w, op, "(*window, C_in, C_out)")
  window = w.shape[:rank]
  if x3.shape[-1] != w.shape[-2]:
    raise ValueError(
      f"{op}: x has {x3.shape[-1]} channels (x.shape={jnp.shape(x)}) but the kernel expects "
      f"w.shape[-2]={w.shape[-2]} (w.shape={w.shape})"
    )
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  pairs = transpose_padding(window, strides, dilation, padding, op)
  in_spatial = x3.shape[1:-1]
  if any(o < 1 for o in conv_transpose_output_shape(in_spatial, window, strides, pairs, dilation)):
    raise ValueError(
      f"{op}: padding {pairs} leaves no output for input shape {jnp.shape(x)}, window {window}, "
      f"strides {strides}, dilation {dilation}"
    )
  # The convolution whose input gradient this is: from the spread input's full extent
  # `S (W - 1) + 1 + reach` (no padding) to `x`'s spatial shape, with the flipped kernel.
  reach = window_reach(window, dilation)
  full = tuple(s * (n - 1) + 1 + r for s, n, r in zip(strides, in_spatial, reach))
  w_conv = flipped_kernel(w, 1)
  spec = ConvSpec(full, tuple(window), strides, dilation, 1, ((0, 0),) * rank, "constant", algorithm, precision)
  _check_algorithm(spec, op)
  y = bind(conv_input_grad_p, x3, w_conv, spec=spec)
  y = pad_spatial(y, [(lo - r, hi - r) for (lo, hi), r in zip(pairs, reach)])
  return y.reshape(*batch, *y.shape[1:])
