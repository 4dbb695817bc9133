"""A small funconv CNN under `jax.jvp`, `jax.hessian` and `jax.vmap` over a conv kernel (an
ensemble sharing the input) agrees with the same model on XLA's native convolution, in float32,
bfloat16 and complex64.

"The same model on the native convolution" is the model with the convolution its layers call
(`funconv.ops.conv`, looked up by `funconv.layers.conv` at apply time) replaced, with pytest's
monkeypatch, by `tests.oracle.native_conv`.
"""

import contextlib
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funconv as fc
from tests.oracle import native_conv, sum_error_bound

DTYPES = ["float32", "bfloat16", "complex64"]
N, INPUT_SHAPE, CLASSES = 3, (8, 8, 2), 3
# Agreement relative to the largest entry. float32 and complex64: twice the rounding bound of the longest sum (a
# kernel's cotangent, over the N x 8 x 8 positions) grown through the four layers. bfloat16 accumulates in float32
# but rounds each layer's output to bfloat16: one of its roundings per layer (an independent float32-accumulating
# bfloat16 convolution differed from lax's by up to 0.2% of the largest entry in the jvp, 0.7% in the gradients,
# 0.9% in the Hessian).
LAYERS = 4
TOL = {
  "float32": 2 * sum_error_bound(N * 8 * 8, jnp.float32, growth=LAYERS),
  "bfloat16": LAYERS * float(jnp.finfo(jnp.bfloat16).eps),
  "complex64": 2 * sum_error_bound(N * 8 * 8, jnp.float32, growth=LAYERS),
}


def make_net(dtype):
  """Conv -> tanh -> pool -> grouped conv -> tanh -> flatten -> dense.

  float32 max-pools (random continuous inputs: no ties); bfloat16 average-pools (its few values
  tie often, and ties split max's gradient differently from lax's); complex64 has no pooling
  (the pools order or take square roots of real numbers) and strides its first conv instead.
  tanh is defined (analytic) on complex numbers.
  """
  if dtype == "complex64":
    first = [fc.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), fc.Tanh]
  else:
    pool = fc.MaxPool((2, 2), strides=(2, 2)) if dtype == "float32" else fc.AvgPool((2, 2), strides=(2, 2))
    first = [fc.Conv(4, (3, 3), padding="SAME"), fc.Tanh, pool]
  return fc.serial(*first, fc.Conv(6, (3, 3), padding="VALID", groups=2), fc.Tanh, fc.Flatten, fc.Dense(CLASSES))


def setup(dtype):
  """`(net, params, state, x, labels)`: float32-initialised params cast to `dtype` (complex ones get
  a random imaginary part), random biases so that every parameter matters."""
  net = make_net(dtype)
  out_shape, params, state = net.init(jax.random.key(0), INPUT_SHAPE)
  assert out_shape == (CLASSES,)
  rng = np.random.default_rng(DTYPES.index(dtype))

  def cast(p):
    p = np.asarray(p, np.float32)
    if p.ndim == 1:  # a bias
      p = p + 0.1 * rng.standard_normal(p.shape)
    if dtype == "complex64":
      p = p + 1j * np.std(p) * rng.standard_normal(p.shape)
    return jnp.asarray(p.astype(jnp.dtype(dtype)))

  params = jax.tree.map(cast, params)
  x = rng.standard_normal((N, *INPUT_SHAPE))
  if dtype == "complex64":
    x = x + 1j * rng.standard_normal(x.shape)
  x = jnp.asarray(x.astype(jnp.dtype(dtype)))
  labels = jnp.asarray(rng.integers(0, CLASSES, N))
  return net, params, state, x, labels


def loss_fn(net, state, dtype):
  """A real scalar loss of `(params, x, labels)`: cross-entropy in float32, or for complex logits
  the mean squared modulus (complex logits have no softmax)."""

  def loss(params, x, labels):
    logits, _ = fc.batched(net.apply)(params, state, x)
    chex.assert_shape(logits, (x.shape[0], CLASSES))
    if dtype == "complex64":
      return jnp.mean(jnp.sum(jnp.abs(logits) ** 2, axis=-1))
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

  return loss


@pytest.fixture
def native_convolution(monkeypatch):
  """A context manager within which funconv's conv layers run on `native_conv`.

  The layers call `ops.conv` with `ops` the `funconv.ops` module, so patching that module's
  attribute reaches them; a name the layer module imported directly is patched as well.
  """
  ops_module = importlib.import_module("funconv.ops")
  layer_module = importlib.import_module("funconv.layers.conv")
  original = ops_module.conv

  @contextlib.contextmanager
  def patched():
    with monkeypatch.context() as m:
      m.setattr(ops_module, "conv", native_conv)
      for name, value in list(vars(layer_module).items()):
        if value is original:
          m.setattr(layer_module, name, native_conv)
      yield

  return patched


def both(program, native_convolution, *args):
  """`program(*args)` jitted, with funconv's convolution and with the native one; after checking
  that funconv's program has no native convolution (DESIGN.md section 1) and the native run does."""
  assert "conv_general_dilated" not in str(jax.make_jaxpr(program)(*args))
  actual = jax.jit(program)(*args)
  with native_convolution():
    # A new function: jit and make_jaxpr cache traces by function, and funconv's must not be reused.
    native_program = lambda *a: program(*a)
    assert "conv_general_dilated" in str(jax.make_jaxpr(native_program)(*args))  # the patch reached the layers
    expected = jax.jit(native_program)(*args)
  return actual, expected


def assert_trees_close(actual, expected, tol):
  chex.assert_trees_all_equal_shapes_and_dtypes(actual, expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a = np.asarray(a.astype(jnp.promote_types(a.dtype, jnp.float32)))
    e = np.asarray(e.astype(jnp.promote_types(e.dtype, jnp.float32)))
    scale = float(np.max(np.abs(e), initial=0.0))
    assert scale > 0, "a transformation that is identically zero tests nothing"
    np.testing.assert_allclose(a, e, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_jvp_matches_native(dtype, native_convolution):
  """Forward mode through the whole network, in every parameter and in the input."""
  net, params, state, x, labels = setup(dtype)
  loss = loss_fn(net, state, dtype)
  rng = np.random.default_rng(10)

  def tangent(a):
    t = rng.standard_normal(a.shape) + (1j * rng.standard_normal(a.shape) if dtype == "complex64" else 0)
    return jnp.asarray((t * float(jnp.std(a.astype(jnp.complex64)))).astype(a.dtype))

  t_params, t_x = jax.tree.map(tangent, params), tangent(x)
  program = lambda params, x, t_params, t_x: jax.jvp(lambda p, x: loss(p, x, labels), (params, x), (t_params, t_x))
  (value, slope), expected = both(program, native_convolution, params, x, t_params, t_x)
  assert value.dtype == slope.dtype == jnp.float32
  assert_trees_close((value, slope), expected, TOL[dtype])


def split_complex(k):
  return (jnp.real(k), jnp.imag(k)) if jnp.iscomplexobj(k) else (k,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_hessian_in_last_conv_kernel_matches_native(dtype, native_convolution):
  """`jax.hessian` of the loss in the last conv's kernel (3x3x2x6: a 108x108 Hessian); a complex
  kernel is split into real and imaginary parts (`hessian` differentiates real inputs)."""
  net, params, state, x, labels = setup(dtype)
  loss = loss_fn(net, state, dtype)
  conv_index = 3 if dtype != "complex64" else 2  # serial: conv, tanh, [pool], conv, ...
  kernel = params[conv_index][0]
  chex.assert_shape(kernel, (3, 3, 2, 6))

  def loss_of_kernel(*parts):
    k = parts[0] if len(parts) == 1 else jax.lax.complex(*parts)
    p = list(params)
    p[conv_index] = (k, *params[conv_index][1:])
    return loss(tuple(p), x, labels)

  parts = split_complex(kernel)
  program = lambda *parts: jax.hessian(loss_of_kernel, argnums=tuple(range(len(parts))))(*parts)
  hess, expected = both(program, native_convolution, *parts)
  for row in hess:
    for block in row:
      chex.assert_shape(block, (*kernel.shape, *kernel.shape))
  assert_trees_close(hess, expected, TOL[dtype])
  # A Hessian is symmetric.
  flat = np.block([[np.asarray(b, np.float32).reshape(kernel.size, kernel.size) for b in row] for row in hess])
  np.testing.assert_allclose(flat, flat.T, rtol=TOL[dtype], atol=TOL[dtype] * float(np.abs(flat).max()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_ensemble_vmap_over_first_conv_kernel_matches_native(dtype, native_convolution):
  """An ensemble of 4 models that differ in the first conv's kernel and share the input batch:
  `jax.vmap` of the loss and of its gradient over the stacked kernels."""
  net, params, state, x, labels = setup(dtype)
  loss = loss_fn(net, state, dtype)
  kernel = params[0][0]
  rng = np.random.default_rng(20)
  kernels = np.stack(
    [np.asarray(kernel)] + [np.asarray(kernel) * (1 + 0.5 * rng.standard_normal(kernel.shape)) for _ in range(3)]
  )
  kernels = jnp.asarray(kernels.astype(kernel.dtype))

  rest = (params[0][1:], *params[1:])  # every parameter but the first kernel

  def member(k, rest, x):
    return loss(((k, *rest[0]), *rest[1:]), x, labels)

  program = lambda kernels, rest, x: jax.vmap(jax.value_and_grad(member, argnums=(0, 1)), in_axes=(0, None, None))(
    kernels, rest, x
  )
  (values, (dk, dparams)), expected = both(program, native_convolution, kernels, rest, x)
  chex.assert_shape([values, dk], [(4,), kernels.shape])
  assert dk.dtype == kernel.dtype
  assert_trees_close((values, dk, dparams), (expected[0], *expected[1]), TOL[dtype])
  # Member 0 is the unmodified model.
  np.testing.assert_allclose(
    np.float32(values[0]),
    np.float32(jax.jit(loss)(params, x, labels)),
    rtol=TOL[dtype] if dtype != "bfloat16" else 1e-2,
  )
