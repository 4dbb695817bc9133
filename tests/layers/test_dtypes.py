"""`dtype` (computation) and `param_dtype` (storage): params, outputs, parameter-free layers, a
bfloat16 CNN against its float32 twin in training and evaluation, float32 BatchNorm statistics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funconv as fc

BF16, F16, F32 = jnp.bfloat16, jnp.float16, jnp.float32

# name: (constructor taking dtype/param_dtype, example input shape)
PARAM_LAYERS = {
  "Dense": (lambda **kw: fc.Dense(3, **kw), (5,)),
  "Dense_no_bias": (lambda **kw: fc.Dense(3, use_bias=False, **kw), (2, 5)),
  "Conv": (lambda **kw: fc.Conv(3, (3, 3), padding="SAME", **kw), (6, 6, 2)),
  "ConvTranspose": (lambda **kw: fc.ConvTranspose(3, (3, 3), strides=(2, 2), padding="SAME", **kw), (4, 4, 2)),
  "DepthwiseConv": (lambda **kw: fc.DepthwiseConv((3,), depth_multiplier=2, **kw), (6, 2)),
  "SeparableConv": (lambda **kw: fc.SeparableConv(4, (3, 3), padding="SAME", **kw), (5, 5, 2)),
  "BatchNorm": (lambda **kw: fc.BatchNorm(**kw), (4, 4, 2)),
  "BatchNorm_no_center": (lambda **kw: fc.BatchNorm(center=False, **kw), (4, 2)),
  "LayerNorm": (lambda **kw: fc.LayerNorm(**kw), (4, 3)),
  "GroupNorm": (lambda **kw: fc.GroupNorm(2, **kw), (3, 3, 4)),
}

PARAM_FREE = {
  "MaxPool": fc.MaxPool((2, 2), strides=(2, 2)),
  "MaxPool_overlapping": fc.MaxPool((3, 3), padding="SAME"),
  "AvgPool": fc.AvgPool((2, 2)),
  "AvgPool_exclude_pad": fc.AvgPool((3, 3), padding="SAME", count_include_pad=False),
  "SumPool": fc.SumPool((2, 2)),
  "L2Pool": fc.L2Pool((2, 2)),
  "GlobalAvgPool": fc.GlobalAvgPool,
  "GlobalMaxPool": fc.GlobalMaxPool,
  "AdaptiveAvgPool": fc.AdaptiveAvgPool((3, 3)),
  "Dropout": fc.Dropout(0.5),
  "Flatten": fc.Flatten,
  "Reshape": fc.Reshape((-1, 2)),
  "Identity": fc.Identity,
  "Relu": fc.Relu,
  "Gelu": fc.Gelu,
  "Softmax": fc.Softmax,
  "LogSoftmax": fc.LogSoftmax,
}


def cnn(**dtypes):
  return fc.serial(
    fc.Conv(8, (3, 3), padding="SAME", **dtypes),
    fc.BatchNorm(**dtypes),
    fc.Relu,
    fc.MaxPool((2, 2), strides=(2, 2)),
    fc.Flatten,
    fc.Dense(4, **dtypes),
  )


def inputs(shape, dtype, offset=0.0, scale=1.0, seed=0):
  return jnp.asarray(offset + scale * np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("param_dtype", [BF16, F16, F32])
@pytest.mark.parametrize("name", sorted(PARAM_LAYERS))
def test_params_are_created_in_param_dtype_and_state_in_float32(name, param_dtype):
  make, shape = PARAM_LAYERS[name]
  layer = make(param_dtype=param_dtype)
  params, state = jax.eval_shape(lambda k: layer.init(k, shape)[1:], jax.random.key(0))  # traces init, no compile
  assert jax.tree.leaves(params)
  assert all(leaf.dtype == param_dtype for leaf in jax.tree.leaves(params))
  assert all(leaf.dtype == F32 for leaf in jax.tree.leaves(state))


# (x dtype, param_dtype, dtype, the output dtype)
DTYPE_CASES = [
  (BF16, BF16, None, BF16),
  (BF16, F32, None, F32),
  (F32, BF16, None, F32),
  (F16, F16, None, F16),
  (F32, F32, BF16, BF16),
  (BF16, BF16, F32, F32),
  (BF16, F32, F16, F16),
]


@pytest.mark.parametrize("x_dtype, param_dtype, dtype, expected", DTYPE_CASES)
@pytest.mark.parametrize("name", sorted(PARAM_LAYERS))
def test_output_is_in_dtype_or_the_result_type_of_input_and_params(name, x_dtype, param_dtype, dtype, expected):
  make, shape = PARAM_LAYERS[name]
  layer = make(dtype=dtype, param_dtype=param_dtype)
  _, params, state = jax.eval_shape(lambda k: layer.init(k, shape), jax.random.key(0))
  x = jax.ShapeDtypeStruct((2, *shape), x_dtype)
  for train in (True, False):
    y, new_state = jax.eval_shape(lambda p, s, x: fc.batched(layer.apply)(p, s, x, train=train), params, state, x)
    assert y.dtype == expected, (train, y.dtype)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


@pytest.mark.parametrize("dtype", [BF16, F16])
@pytest.mark.parametrize("name", sorted(PARAM_FREE))
def test_parameter_free_layers_keep_the_input_dtype(name, dtype):
  layer = PARAM_FREE[name]
  x = jax.ShapeDtypeStruct((2, 6, 6, 2), dtype)
  y, _ = jax.eval_shape(lambda x: fc.batched(layer.apply)((), (), x, key=jax.random.key(0), train=True), x)
  assert y.dtype == dtype


def test_bfloat16_cnn_stays_bfloat16_and_agrees_with_its_float32_twin():
  key, shape = jax.random.key(0), (8, 8, 3)
  net16, net32 = cnn(dtype=BF16, param_dtype=BF16), cnn()
  _, own_params16, state = net16.init(key, shape)
  assert {leaf.dtype for leaf in jax.tree.leaves(own_params16)} == {jnp.dtype(BF16)}
  _, params32, state32 = net32.init(key, shape)
  params16 = jax.tree.map(lambda p: p.astype(BF16), params32)  # the twin's weights, rounded
  x32 = inputs((6, *shape), F32)
  x16 = x32.astype(BF16)
  apply16, apply32 = (jax.jit(fc.batched(net.apply), static_argnames="train") for net in (net16, net32))
  y16, new_state = apply16(params16, state, x16, train=True)
  y32, new_state32 = apply32(params32, state32, x32, train=True)
  chex.assert_type(y16, BF16)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state32)  # float32 running statistics
  np.testing.assert_allclose(np.asarray(y16, F32), y32, rtol=0.05, atol=0.05)
  chex.assert_trees_all_close(new_state, new_state32, rtol=0.02, atol=0.02)
  y16, same_state = apply16(params16, new_state, x16, train=False)
  chex.assert_type(y16, BF16)
  chex.assert_trees_all_equal(same_state, new_state)
  np.testing.assert_allclose(
    np.asarray(y16, F32), apply32(params32, new_state32, x32, train=False)[0], rtol=0.05, atol=0.05
  )


@pytest.mark.parametrize("param_dtype", [BF16, F32])
def test_gradients_come_back_in_the_params_dtype(param_dtype):
  net = cnn(dtype=BF16, param_dtype=param_dtype)
  _, params, state = net.init(jax.random.key(0), (6, 6, 2))
  x = inputs((4, 6, 6, 2), BF16)

  def loss(params):
    logits, _ = fc.batched(net.apply)(params, state, x, train=True)
    return jnp.mean(jnp.square(logits.astype(F32)))

  grads = jax.jit(jax.grad(loss))(params)
  chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
  chex.assert_tree_all_finite(grads)
  assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


def test_batchnorm_statistics_of_bfloat16_accumulate_in_float32():
  # bfloat16 spaces values near 1000 by 4: the old all-bfloat16 statistics were off by 16 (mean) and 4x (variance)
  x = inputs((64, 4, 4, 3), BF16, offset=1000.0, scale=10.0)
  exact = np.asarray(x, np.float64)
  mean, var = exact.mean(axis=(0, 1, 2)), exact.var(axis=(0, 1, 2))
  bn = fc.BatchNorm(momentum=0.0, param_dtype=BF16)  # the new state is the batch statistics
  _, params, state = bn.init(jax.random.key(0), x.shape[1:])
  y, (batch_mean, batch_var) = jax.jit(fc.batched(bn.apply), static_argnames="train")(params, state, x, train=True)
  np.testing.assert_allclose(batch_mean, mean, rtol=1e-6)
  np.testing.assert_allclose(batch_var, var, rtol=1e-4)
  chex.assert_type(y, BF16)
  np.testing.assert_allclose(np.asarray(y, np.float64), (exact - mean) / np.sqrt(var + 1e-5), atol=0.03)


def _layer_norm(x):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def _group_norm_2(x):
  g = x.reshape(*x.shape[:-1], 2, -1)
  return ((g - g.mean((0, 2), keepdims=True)) / np.sqrt(g.var((0, 2), keepdims=True) + 1e-5)).reshape(x.shape)


@pytest.mark.parametrize(
  "layer, reference", [(fc.LayerNorm(), _layer_norm), (fc.GroupNorm(2), _group_norm_2)], ids=["LayerNorm", "GroupNorm"]
)
def test_layer_and_group_norm_of_bfloat16_reduce_in_float32(layer, reference):
  x = inputs((16, 4), BF16, offset=1000.0, scale=10.0)
  _, params, state = layer.init(jax.random.key(0), x.shape)
  y, _ = jax.jit(layer.apply)(jax.tree.map(lambda p: p.astype(BF16), params), state, x)
  chex.assert_type(y, BF16)
  np.testing.assert_allclose(np.asarray(y, np.float64), reference(np.asarray(x, np.float64)), atol=0.03)
