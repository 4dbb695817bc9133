"""Every layer: init/apply shapes and dtypes, jit/vmap/grad/eval_shape, batched == looped, errors."""

import math

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import funconv as fc
from tests.oracle import assert_close_to_largest, sum_error_bound
from tests.sweep import examples

# (name, constructor from a drawn channel count, spatial rank it needs or None for any)
LAYERS = {
  "Dense": (lambda c: fc.Dense(5), None),
  "Conv": (lambda c: fc.Conv(4, (3, 3), strides=(2, 1), padding="SAME", dilation=(1, 2)), 2),
  "Conv1D": (lambda c: fc.Conv(4, (3,), padding="CAUSAL"), 1),
  "Conv3D": (lambda c: fc.Conv(2, (2, 2, 2), use_bias=False), 3),
  "GroupedConv": (lambda c: fc.Conv(2 * c, (3, 3), padding="SAME", groups=c), 2),
  "ConvTranspose": (lambda c: fc.ConvTranspose(3, (3, 3), strides=(2, 2), padding="SAME"), 2),
  "DepthwiseConv": (lambda c: fc.DepthwiseConv((3, 3), depth_multiplier=2, padding="SAME"), 2),
  "SeparableConv": (lambda c: fc.SeparableConv(6, (3, 3), padding="SAME"), 2),
  "MaxPool": (lambda c: fc.MaxPool((2, 2), strides=(2, 2)), 2),
  "AvgPool": (lambda c: fc.AvgPool((3, 3), padding="SAME", count_include_pad=False), 2),
  "SumPool": (lambda c: fc.SumPool((2,), strides=(1,)), 1),
  "L2Pool": (lambda c: fc.L2Pool((2, 2), strides=(2, 2)), 2),
  "GlobalAvgPool": (lambda c: fc.GlobalAvgPool, None),
  "GlobalMaxPool": (lambda c: fc.GlobalMaxPool, None),
  "LayerNorm": (lambda c: fc.LayerNorm(), None),
  "GroupNorm": (lambda c: fc.GroupNorm(num_groups=c), None),
  "Flatten": (lambda c: fc.Flatten, None),
  "Reshape": (lambda c: fc.Reshape((-1, c)), None),
  "Identity": (lambda c: fc.Identity, None),
  "Dropout": (lambda c: fc.Dropout(0.3), None),
  **{
    name: (lambda c, name=name: getattr(fc, name), None)
    for name in ["Relu", "LeakyRelu", "Elu", "Selu", "Gelu", "Sigmoid", "Tanh", "Softplus", "Softmax", "LogSoftmax"]
  },
  "elementwise": (lambda c: fc.elementwise(jnp.sin), None),
  "serial": (lambda c: fc.serial(fc.Conv(3, (3, 3), padding="SAME"), fc.Relu, fc.MaxPool((2, 2), (2, 2))), 2),
  "residual": (lambda c: fc.residual(fc.serial(fc.Conv(c, (3, 3), padding="SAME"), fc.Tanh)), 2),
  "FanInConcat": (lambda c: fc.serial(fc.FanOut(2), fc.parallel(fc.Conv(2, (1, 1)), fc.Identity), fc.FanInConcat()), 2),
  "shape_dependent": (lambda c: fc.shape_dependent(lambda s: fc.Dense(s[-1] * 2)), None),
}


@st.composite
def layer_cases(draw, name):
  make, rank = LAYERS[name]
  rank = rank or draw(st.integers(1, 3))
  c = draw(st.integers(1, 3))
  spatial = tuple(draw(st.integers(3, 7)) for _ in range(rank))
  return make(c), (*spatial, c), draw(st.integers(0, 99))


def example_inputs(shape, batch, seed):
  return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(LAYERS))
@examples(2, default=1)  # one layer configuration each in the default run
@given(data=st.data())
def test_layer_contract(name, data):
  layer, shape, seed = data.draw(layer_cases(name))
  key = jax.random.key(seed)
  out_shape, params, state = layer.init(key, shape)
  abstract_params = jax.eval_shape(lambda k: layer.init(k, shape)[1:], key)  # init without allocating
  chex.assert_trees_all_equal_shapes(abstract_params, (params, state))
  xs = example_inputs(shape, 3, seed)

  y, new_state = layer.apply(params, state, xs[0], key=key, train=True)
  chex.assert_shape(y, out_shape)
  chex.assert_type(y, jnp.float32)
  chex.assert_trees_all_equal_shapes(new_state, state)
  abstract = jax.eval_shape(lambda x: layer.apply(params, state, x, key=key, train=True)[0], xs[0])
  assert abstract.shape == tuple(out_shape)

  # Other programs for the same values sum in other orders: no sum in a layer is longer than its input.
  bound = 2 * sum_error_bound(math.prod(shape))
  jitted, _ = jax.jit(lambda p, s, x: layer.apply(p, s, x))(params, state, xs[0])
  assert_close_to_largest(jitted, layer.apply(params, state, xs[0])[0], bound)

  # batched (the whole batch handed to the layer) == vmap == a loop over examples, in eval mode
  batch_y, _ = fc.batched(layer.apply)(params, state, xs)
  vmap_y = jax.vmap(lambda x: layer.apply(params, state, x)[0])(xs)
  loop_y = np.stack([layer.apply(params, state, x)[0] for x in xs])
  chex.assert_shape(batch_y, (3, *out_shape))
  assert_close_to_largest(batch_y, loop_y, bound)
  assert_close_to_largest(vmap_y, loop_y, bound)

  grads = jax.grad(lambda p, x: jnp.sum(fc.batched(layer.apply)(p, state, x)[0] ** 2))(params, xs)
  chex.assert_trees_all_equal_shapes(grads, params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_batched_dropout_matches_vmap_with_per_example_keys():
  layer = fc.serial(fc.Dense(8), fc.Dropout(0.5), fc.Dense(3))
  _, params, state = layer.init(jax.random.key(0), (5,))
  xs = example_inputs((5,), 4, 0)
  key = jax.random.key(1)
  y, _ = fc.batched(layer.apply)(params, state, xs, key=key, train=True)
  by_hand = jax.vmap(lambda x, k: layer.apply(params, state, x, key=k, train=True)[0], axis_name="batch")(
    xs, jax.random.split(key, 4)
  )
  np.testing.assert_allclose(y, by_hand, rtol=1e-6)


def test_dropout_keeps_the_expected_fraction_and_rescales():
  x = jnp.ones((200, 500))
  y, _ = fc.Dropout(0.3).apply((), (), x, key=jax.random.key(0), train=True)
  kept = y != 0
  assert abs(float(kept.mean()) - 0.7) < 0.01
  np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
  same, _ = fc.Dropout(0.3).apply((), (), x, train=False)
  np.testing.assert_array_equal(same, x)
  with pytest.raises(ValueError, match="Dropout: train=True needs a PRNG key"):
    fc.Dropout(0.3).apply((), (), x, train=True)
  with pytest.raises(ValueError, match="drop probability"):
    fc.Dropout(1.5)


def test_batchnorm_train_and_eval_against_hand_computation():
  bn = fc.BatchNorm(momentum=0.8, epsilon=1e-5)
  _, params, state = bn.init(jax.random.key(0), (4, 4, 3))
  params = (jnp.array([0.1, 0.2, 0.3]), jnp.array([1.5, 0.5, 2.0]))
  xs = example_inputs((4, 4, 3), 6, 1) * 3 + 1
  y, new_state = fc.batched(bn.apply)(params, state, xs, train=True)
  xs_np, beta, gamma = np.asarray(xs), np.asarray(params[0]), np.asarray(params[1])  # the hand computation in NumPy
  mean, var = xs_np.mean(axis=(0, 1, 2)), xs_np.var(axis=(0, 1, 2))
  np.testing.assert_allclose(y, (xs_np - mean) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(new_state[0], 0.8 * 0 + 0.2 * mean, rtol=1e-5)
  np.testing.assert_allclose(new_state[1], 0.8 * 1 + 0.2 * var, rtol=1e-5)
  # the same under a hand-written vmap with the axis name
  y_vmap, state_vmap = jax.vmap(
    lambda x: bn.apply(params, state, x, train=True), axis_name="batch", out_axes=(0, None)
  )(xs)
  np.testing.assert_allclose(y_vmap, y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(state_vmap[1], new_state[1], rtol=1e-5)
  # evaluation uses the running averages and leaves them alone
  y_eval, eval_state = fc.batched(bn.apply)(params, new_state, xs)
  expected = (xs_np - np.asarray(new_state[0])) / np.sqrt(np.asarray(new_state[1]) + 1e-5) * gamma + beta
  np.testing.assert_allclose(y_eval, expected, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(eval_state, new_state)
  with pytest.raises(ValueError, match="BatchNorm: train=True reduces over the axis named 'batch'"):
    bn.apply(params, state, xs[0], train=True)


def test_init_errors_name_the_layer_and_shapes():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"Conv: a 2-D filter needs input_shape .* got \(28, 28\)"):
    fc.Conv(8, (3, 3)).init(key, (28, 28))
  with pytest.raises(ValueError, match="Conv: groups=4 must divide the input channels"):
    fc.Conv(8, (3, 3), groups=4).init(key, (28, 28, 6))
  with pytest.raises(ValueError, match="Conv: window .* larger than the padded input"):
    fc.Conv(8, (5, 5)).init(key, (3, 3, 1))
  with pytest.raises(ValueError, match="strides"):
    fc.Conv(8, (3, 3), strides=(0, 1))
  with pytest.raises(ValueError, match="unknown padding"):
    fc.MaxPool((2, 2), padding="FULL").init(key, (8, 8, 1))
  with pytest.raises(ValueError, match=r"2 \(FanInSum\): every input must have the same shape"):
    fc.serial(fc.FanOut(2), fc.parallel(fc.Dense(3), fc.Dense(4)), fc.FanInSum).init(key, (5,))
  with pytest.raises(ValueError, match="GroupNorm: num_groups=4 must divide"):
    fc.GroupNorm(4).init(key, (8, 8, 6))
  with pytest.raises(ValueError, match="Reshape: cannot reshape"):
    fc.Reshape((5, -1)).init(key, (8, 3))
  conv = fc.Conv(8, (3, 3))
  _, params, state = conv.init(key, (8, 8, 3))
  with pytest.raises(ValueError, match="conv: with groups=1, x's 4 input channels"):
    conv.apply(params, state, jnp.ones((8, 8, 4)))
  with pytest.raises(TypeError, match="floating"):
    conv.apply(params, state, jnp.ones((8, 8, 3), jnp.int32))


def test_initialisers_are_the_documented_defaults():
  _, (W, b), _ = fc.Conv(64, (3, 3)).init(jax.random.key(0), (32, 32, 64))
  np.testing.assert_allclose(float(jnp.std(W)), np.sqrt(2 / (9 * 64)), rtol=0.05)  # He normal
  assert not jnp.any(b)
  _, (W, b), _ = fc.Dense(256).init(jax.random.key(0), (512,))
  np.testing.assert_allclose(float(jnp.std(W)), np.sqrt(2 / (512 + 256)), rtol=0.05)  # Glorot normal
