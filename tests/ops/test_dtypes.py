"""Dtypes and zero-size axes of `fc.ops.conv`, `fc.ops.conv_transpose` and `fc.ops.conv_general_dilated`.

Every dtype lax's convolution accepts (DESIGN.md section 3): float16 and bfloat16 (accumulated in
float32, the output keeping the input dtype, as lax's does), float32, float64, complex64 and
complex128; mixed inputs compute in `jnp.result_type(x, w)`; integers are refused. Empty batch
and channel axes (and, for the lax drop-in, empty spatial outputs) give what lax gives.

The oracle is lax's own convolution; for float16 and bfloat16 it is the convolution with
`preferred_element_type=float32`, cast back. The tolerance of a sum of `n` products of
magnitudes at most `scale` is one rounding of the output dtype (`rtol = 2 eps`) plus `n`
roundings of the accumulator (`atol = 8 n eps_acc scale`): an implementation that accumulated
16-bit floats in their own dtype misses it (tried: about 1 output in 10 of a 3x3x4 convolution).
"""

import contextlib
import math
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funconv as fc

LAYOUTS = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
LOW = {"float16", "bfloat16"}
X64 = {"float64", "complex128"}
DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128"]


def x64_if_needed(*dtype_names):
  """`jax.enable_x64` only around the tests that need it, so other tests keep 32-bit defaults."""
  return jax.enable_x64(True) if X64 & set(dtype_names) else contextlib.nullcontext()


def lax_conv(x, w, strides, padding, dilation, groups=1, transpose=False, preferred=None):
  """lax's convolution (or transposed convolution) on `(*batch, *spatial, C)` channels-last arrays."""
  rank = w.ndim - 2
  batch = x.shape[: x.ndim - rank - 1]
  x3 = x.reshape(math.prod(batch), *x.shape[len(batch) :])
  if transpose:
    y = lax.conv_transpose(x3, w, strides, padding, dilation, LAYOUTS[rank], preferred_element_type=preferred)
  else:
    y = lax.conv_general_dilated(
      x3,
      w,
      strides,
      padding,
      rhs_dilation=dilation,
      feature_group_count=groups,
      dimension_numbers=LAYOUTS[rank],
      preferred_element_type=preferred,
    )
  return y.reshape(*batch, *y.shape[1:])


CONFIGS = {  # name: (transpose, x shape, w shape, arguments)
  "conv2d_stride21_same": (False, (2, 6, 5, 4), (3, 3, 4, 5), dict(strides=(2, 1), padding="SAME", dilation=(1, 1))),
  "conv2d_depthwise_dilated": (
    False,
    (2, 6, 6, 3),
    (3, 3, 1, 6),
    dict(strides=(1, 1), padding="SAME", dilation=(2, 2), groups=3),
  ),
  "transpose2d_stride2_same": (True, (2, 3, 4, 3), (4, 4, 3, 2), dict(strides=(2, 2), padding="SAME", dilation=(1, 1))),
}


def ours(transpose, kwargs):
  if transpose:
    return lambda x, w: fc.ops.conv_transpose(x, w, kwargs["strides"], kwargs["padding"], kwargs["dilation"])
  return lambda x, w: fc.ops.conv(
    x, w, kwargs["strides"], kwargs["padding"], kwargs["dilation"], kwargs.get("groups", 1)
  )


def native(transpose, kwargs, compute_dtype):
  """The oracle in `compute_dtype`: low precision through a float32 accumulator, cast back."""
  preferred = jnp.float32 if jnp.dtype(compute_dtype).name in LOW else None

  def run(x, w):
    x, w = x.astype(compute_dtype), w.astype(compute_dtype)
    y = lax_conv(
      x, w, kwargs["strides"], kwargs["padding"], kwargs["dilation"], kwargs.get("groups", 1), transpose, preferred
    )
    return y.astype(compute_dtype)

  return run


def random(rng, shape, dtype):
  """Standard normal entries of `dtype` (complex: independent real and imaginary parts)."""
  a = rng.standard_normal(shape)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    a = (a + 1j * rng.standard_normal(shape)) / math.sqrt(2)
  return jnp.asarray(a.astype(jnp.dtype(dtype)))


def real_dtype(dtype):
  return jnp.finfo(jnp.dtype(dtype)).dtype  # float32 for complex64, float16 for float16, ...


def tolerance(dtype, acc_dtype, n, scale):
  """`rtol` of one rounding to `dtype` and `atol` of `n` accumulations in `acc_dtype` of terms up to `scale`."""
  eps, eps_acc = float(jnp.finfo(real_dtype(dtype)).eps), float(jnp.finfo(real_dtype(acc_dtype)).eps)
  return dict(rtol=2 * eps, atol=8 * n * eps_acc * scale + 1e-30)


def assert_close(actual, expected, dtype, acc_dtype, n, scale):
  chex.assert_equal_shape([actual, expected])
  assert actual.dtype == expected.dtype == jnp.dtype(dtype), (actual.dtype, expected.dtype, dtype)
  as_np = lambda a: np.asarray(a.astype(jnp.promote_types(a.dtype, jnp.float32)))
  np.testing.assert_allclose(as_np(actual), as_np(expected), **tolerance(dtype, acc_dtype, n, scale))


def maxabs(a):
  return float(jnp.max(jnp.abs(a.astype(jnp.promote_types(a.dtype, jnp.float32)))))


def loss_of(f, c, quadratic):
  """A real loss of `f(x, w)`: `sum(re(c y)) (+ sum(|y|^2) / 2)`, in at least float32."""

  def loss(x, w):
    y = f(x, w)
    y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
    value = jnp.sum(jnp.real(c.astype(y.dtype) * y))
    return value + 0.5 * jnp.sum(jnp.abs(y) ** 2) if quadratic else value

  return loss


def sum_sizes(transpose, x, w, y, groups=1):
  """Terms per output of the forward conv, and of the input and kernel gradients."""
  rank = w.ndim - 2
  window = math.prod(w.shape[:rank])
  forward = window * (x.shape[-1] if transpose else w.shape[-2])
  input_grad = window * (w.shape[-1] if transpose else w.shape[-1] // groups)
  kernel_grad = math.prod(y.shape[:-1]) if not transpose else math.prod(x.shape[:-1])
  return forward, input_grad, kernel_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONFIGS)
def test_dtype_forward_and_gradients_match_native(config, dtype):
  transpose, x_shape, w_shape, kwargs = CONFIGS[config]
  with x64_if_needed(dtype):
    rng = np.random.default_rng(zlib.crc32(f"{config}-{dtype}".encode()))
    x = random(rng, x_shape, dtype)
    w = random(rng, w_shape, dtype) / math.sqrt(math.prod(w_shape[:-1]))
    w = w.astype(dtype)
    f, f_ref = ours(transpose, kwargs), native(transpose, kwargs, dtype)
    acc = jnp.float32 if dtype in LOW else dtype
    shape = jax.eval_shape(f_ref, x, w)
    c = random(rng, shape.shape, dtype)  # exactly representable in dtype: the cotangent has no rounding
    quadratic = dtype not in LOW
    # The output and the gradients of a real loss, in one compiled program per convolution.
    run = lambda f: jax.jit(lambda x, w: (f(x, w), jax.grad(loss_of(f, c, quadratic), argnums=(0, 1))(x, w)))
    y, grads = run(f)(x, w)
    y_ref, grads_ref = run(f_ref)(x, w)
    n_fwd, n_dx, n_dw = sum_sizes(transpose, x, w, y_ref, kwargs.get("groups", 1))
    assert y.dtype == jnp.dtype(dtype)
    assert_close(y, y_ref, dtype, acc, n_fwd, maxabs(x) * maxabs(w))
    g_max = maxabs(c) + (maxabs(y_ref) if quadratic else 0.0)  # the largest output cotangent
    assert grads[0].dtype == x.dtype and grads[1].dtype == w.dtype
    assert_close(grads[0], grads_ref[0], dtype, acc, n_dx, 2 * g_max * maxabs(w))
    assert_close(grads[1], grads_ref[1], dtype, acc, n_dw, 2 * g_max * maxabs(x))


MIXED = [
  ("float16", "float32"),
  ("bfloat16", "float16"),
  ("float32", "bfloat16"),
  ("float32", "complex64"),
  ("bfloat16", "complex64"),
  ("float32", "float64"),
  ("complex64", "float64"),
  ("float16", "complex128"),
]


@pytest.mark.parametrize(
  "config,x_dtype,w_dtype",
  [("conv2d_stride21_same", *pair) for pair in MIXED] + [("transpose2d_stride2_same", *pair) for pair in MIXED[::3]],
)
def test_mixed_dtypes_compute_in_the_result_type(config, x_dtype, w_dtype):
  transpose, x_shape, w_shape, kwargs = CONFIGS[config]
  with x64_if_needed(x_dtype, w_dtype):
    rng = np.random.default_rng(7)
    x, w = random(rng, x_shape, x_dtype), random(rng, w_shape, w_dtype)
    result = jnp.result_type(x, w)
    f, f_ref = ours(transpose, kwargs), native(transpose, kwargs, result)
    c = random(rng, jax.eval_shape(f_ref, x, w).shape, result)
    run = lambda f: jax.jit(lambda x, w: (f(x, w), jax.grad(loss_of(f, c, False), argnums=(0, 1))(x, w)))
    y, (dx, dw) = run(f)(x, w)
    y_ref, (dx_ref, dw_ref) = run(f_ref)(x, w)
    assert y.dtype == result
    n_fwd, n_dx, n_dw = sum_sizes(transpose, x, w, y_ref)
    acc = jnp.float32 if result.name in LOW else result
    assert_close(y, y_ref, result, acc, n_fwd, maxabs(x) * maxabs(w))
    assert dx.dtype == x.dtype and dw.dtype == w.dtype
    assert_close(dx, dx_ref, x.dtype, acc, n_dx, maxabs(c) * maxabs(w))
    assert_close(dw, dw_ref, w.dtype, acc, n_dw, maxabs(c) * maxabs(x))


@pytest.mark.parametrize(
  "x_dtype,w_dtype",
  [("int32", "float32"), ("float32", "int32"), ("int8", "int8"), ("uint8", "float16"), ("float32", "uint8")],
)
@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_integer_inputs_raise_type_error_naming_the_op(op, x_dtype, w_dtype):
  x, w = jnp.ones((1, 5, 5, 2), x_dtype), jnp.ones((3, 3, 2, 2), w_dtype)
  call = lambda x, w: getattr(fc.ops, op)(x, w, 1, "SAME")
  # \b: "conv" must be named as itself, not only as part of "conv_transpose" (and vice versa).
  with pytest.raises(TypeError, match=rf"\b{op}\b"):
    call(x, w)
  with pytest.raises(TypeError, match=rf"\b{op}\b"):
    jax.eval_shape(call, x, w)  # at trace time too


ZERO_SIZE = {  # name: (transpose, x shape, w shape, arguments)
  "conv_batch0": (False, (0, 5, 5, 2), (3, 3, 2, 4), dict(strides=(2, 2), padding="SAME", dilation=(1, 1))),
  "conv_batch3x0": (False, (3, 0, 5, 5, 2), (3, 3, 2, 4), dict(strides=(1, 1), padding="VALID", dilation=(1, 1))),
  "conv_batch0_groups2": (False, (0, 6, 4), (3, 2, 4), dict(strides=(1,), padding="SAME", dilation=(2,), groups=2)),
  "conv_cin0": (False, (2, 5, 5, 0), (3, 3, 0, 4), dict(strides=(1, 1), padding="SAME", dilation=(1, 1))),
  "conv_cout0": (False, (2, 5, 5, 2), (3, 3, 2, 0), dict(strides=(2, 1), padding="VALID", dilation=(1, 1))),
  "transpose_batch0": (True, (0, 3, 3, 2), (3, 3, 2, 4), dict(strides=(2, 2), padding="SAME", dilation=(1, 1))),
  "transpose_cin0": (True, (2, 3, 3, 0), (3, 3, 0, 4), dict(strides=(2, 2), padding="VALID", dilation=(1, 1))),
  "transpose_cout0": (True, (2, 4, 2), (3, 2, 0), dict(strides=(2,), padding="SAME", dilation=(1,))),
}


@pytest.mark.parametrize("name", ZERO_SIZE)
def test_zero_size_axes_match_lax(name):
  transpose, x_shape, w_shape, kwargs = ZERO_SIZE[name]
  rng = np.random.default_rng(3)
  x = rng.standard_normal(x_shape).astype(np.float32)
  w = rng.standard_normal(w_shape).astype(np.float32)
  f, f_ref = ours(transpose, kwargs), native(transpose, kwargs, jnp.float32)
  y, vjp = jax.vjp(f, x, w)
  y_ref, vjp_ref = jax.vjp(f_ref, x, w)
  chex.assert_shape(y, y_ref.shape)
  assert y.dtype == y_ref.dtype == jnp.float32
  np.testing.assert_array_equal(y, y_ref)  # empty, or all zeros (no input channels)
  g = rng.standard_normal(y_ref.shape).astype(np.float32)
  grads, grads_ref = vjp(g), vjp_ref(g)
  for ours_grad, ref_grad, operand in zip(grads, grads_ref, (x, w)):
    chex.assert_shape(ours_grad, operand.shape)
    assert ours_grad.dtype == ref_grad.dtype == jnp.float32
    np.testing.assert_array_equal(ours_grad, ref_grad)  # empty, or zeros
  # Compiled too, with the same answers.
  y_jit = jax.jit(f)(x, w)
  chex.assert_shape(y_jit, y_ref.shape)
  np.testing.assert_array_equal(y_jit, y_ref)


@pytest.mark.parametrize("dtype", ["bfloat16", "complex64"])
@pytest.mark.parametrize("name", ["conv_batch0", "conv_cin0", "transpose_batch0", "transpose_cout0"])
def test_zero_size_axes_keep_the_dtype(name, dtype):
  """Empty results (and the zeros of an empty sum) have the input dtype, compiled, forward and backward."""
  transpose, x_shape, w_shape, kwargs = ZERO_SIZE[name]
  rng = np.random.default_rng(4)
  x, w = random(rng, x_shape, dtype), random(rng, w_shape, dtype)
  f, f_ref = ours(transpose, kwargs), native(transpose, kwargs, dtype)
  y_ref = f_ref(x, w)
  g = random(rng, y_ref.shape, dtype)
  run = jax.jit(lambda x, w, g: (lambda y, vjp: (y, *vjp(g)))(*jax.vjp(f, x, w)))
  y, dx, dw = run(x, w, g)
  chex.assert_shape([y, dx, dw], [y_ref.shape, x.shape, w.shape])
  chex.assert_type([y, dx, dw], jnp.dtype(dtype))
  _, vjp_ref = jax.vjp(f_ref, x, w)
  for ours_value, ref_value in zip((y, dx, dw), (y_ref, *vjp_ref(g))):  # empty, or zeros
    np.testing.assert_array_equal(
      np.asarray(ours_value.astype(jnp.complex64)), np.asarray(ref_value.astype(jnp.complex64))
    )


GENERAL_ZERO = {  # name: (lhs shape, rhs shape, keyword arguments of lax.conv_general_dilated), NCHW / OIHW
  "window_larger_than_input": ((1, 2, 3, 3), (4, 2, 5, 5), dict(window_strides=(1, 1), padding="VALID")),
  "window_larger_in_one_axis": ((2, 2, 6, 3), (3, 2, 2, 4), dict(window_strides=(2, 1), padding="VALID")),
  "negative_padding_crops_all": ((2, 3, 4, 5), (2, 3, 2, 2), dict(window_strides=(1, 1), padding=((-2, -1), (0, 0)))),
  "dilated_window_too_large": (
    (1, 2, 5, 5),
    (2, 2, 3, 3),
    dict(window_strides=(1, 1), padding="VALID", rhs_dilation=(3, 1)),
  ),
  "batch0": ((0, 2, 5, 5), (3, 2, 3, 3), dict(window_strides=(1, 1), padding="SAME")),
  "features0": ((2, 0, 5, 5), (3, 0, 3, 3), dict(window_strides=(2, 2), padding="SAME")),
  "out_features0": ((2, 2, 5, 5), (0, 2, 3, 3), dict(window_strides=(1, 1), padding="VALID")),
  "nhwc_empty_spatial": (
    (1, 3, 3, 2),
    (4, 4, 2, 3),
    dict(window_strides=(1, 1), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")),
  ),
}


@pytest.mark.parametrize("name", GENERAL_ZERO)
def test_conv_general_dilated_empty_results_match_lax(name):
  """The lax drop-in follows lax where `fc.ops.conv` raises: a window larger than the padded input
  gives a 0-length spatial axis, as in lax, not an error."""
  lhs_shape, rhs_shape, kwargs = GENERAL_ZERO[name]
  rng = np.random.default_rng(5)
  lhs = rng.standard_normal(lhs_shape).astype(np.float32)
  rhs = rng.standard_normal(rhs_shape).astype(np.float32)
  y_ref, vjp_ref = jax.vjp(lambda a, b: lax.conv_general_dilated(a, b, **kwargs), lhs, rhs)
  assert 0 in (*lhs.shape, *rhs.shape, *y_ref.shape)
  y, vjp = jax.vjp(lambda a, b: fc.ops.conv_general_dilated(a, b, **kwargs), lhs, rhs)
  chex.assert_shape(y, y_ref.shape)
  assert y.dtype == y_ref.dtype
  np.testing.assert_array_equal(y, y_ref)  # empty, or zeros (no input features)
  g = rng.standard_normal(y_ref.shape).astype(np.float32)
  for ours_grad, ref_grad, operand in zip(vjp(g), vjp_ref(g), (lhs, rhs)):
    chex.assert_shape(ours_grad, operand.shape)
    assert ours_grad.dtype == ref_grad.dtype
    np.testing.assert_array_equal(ours_grad, ref_grad)  # empty, or zeros
  y_jit = jax.jit(lambda a, b: fc.ops.conv_general_dilated(a, b, **kwargs))(lhs, rhs)
  chex.assert_shape(y_jit, y_ref.shape)
  np.testing.assert_array_equal(y_jit, y_ref)
