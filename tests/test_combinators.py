"""serial / parallel / fan-in / residual: composition, key splitting, state threading."""

import jax
import jax.numpy as jnp
import numpy as np

import funconv as fc
from tests.oracle import assert_close_to_largest, sum_error_bound


def test_serial_reads_like_stax_and_threads_state():
  net = fc.serial(
    fc.Conv(32, (3, 3), padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.MaxPool((2, 2), strides=(2, 2)),
    fc.Flatten,
    fc.Dense(10),
  )
  out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
  assert out_shape == (10,)
  assert len(params) == len(state) == 6
  images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  logits, new_state = fc.batched(net.apply)(params, state, images, key=jax.random.key(2), train=True)
  assert logits.shape == (4, 10)
  assert not np.allclose(new_state[1][0], state[1][0])  # BatchNorm's running mean moved
  assert new_state[0] == () and new_state[2] == ()


def test_no_two_dropout_layers_or_examples_share_a_key():
  net = fc.serial(fc.FanOut(2), fc.parallel(fc.Dropout(0.5), fc.Dropout(0.5)), fc.FanInConcat())
  _, params, state = net.init(jax.random.key(0), (64,))
  y, _ = fc.batched(net.apply)(params, state, jnp.ones((3, 64)), key=jax.random.key(1), train=True)
  masks = (np.asarray(y) != 0).reshape(6, 64)
  assert len({m.tobytes() for m in masks}) == 6


def test_residual_adds_the_shortcut():
  block = fc.residual(fc.serial(fc.Dense(4), fc.Relu), fc.Dense(4))
  shape, params, state = block.init(jax.random.key(0), (3,))
  x = jnp.arange(3.0)
  y, _ = block.apply(params, state, x)
  main, shortcut = params[1]
  expected = jax.nn.relu(x @ main[0][0] + main[0][1]) + x @ shortcut[0] + shortcut[1]
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  identity_block = fc.residual(fc.Dense(3))
  _, params, state = identity_block.init(jax.random.key(0), (3,))
  y, _ = identity_block.apply(params, state, x)
  np.testing.assert_allclose(y, x @ params[1][0][0] + params[1][0][1] + x, rtol=1e-6)


def test_per_example_grads_equal_single_example_grads():
  net = fc.serial(fc.Conv(4, (3, 3)), fc.Relu, fc.Flatten, fc.Dense(3))
  _, params, state = net.init(jax.random.key(0), (6, 6, 2))
  xs = jax.random.normal(jax.random.key(1), (5, 6, 6, 2))
  labels = jnp.arange(5) % 3

  def loss(p, x, y):
    return -jax.nn.log_softmax(net.apply(p, state, x)[0])[y]

  grads = fc.per_example_grads(loss)(params, xs, labels)
  for i in (0, 4):
    one = jax.grad(loss)(params, xs[i], labels[i])
    # One example's gradient by two programs; no sum in it is longer than the example's 6 x 6 x 2 values.
    assert_close_to_largest(jax.tree.map(lambda a: a[i], grads), one, 2 * sum_error_bound(6 * 6 * 2))


def test_small_cnn_programs_have_no_native_convolution():
  net = fc.serial(
    fc.Conv(8, (3, 3), padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.MaxPool((2, 2), (2, 2)),
    fc.DepthwiseConv((3, 3)),
    fc.ConvTranspose(4, (2, 2), strides=(2, 2)),
    fc.GlobalAvgPool,
    fc.Dense(10),
  )
  _, params, state = net.init(jax.random.key(0), (16, 16, 3))
  x = jnp.ones((2, 16, 16, 3))

  def loss(p):
    return jnp.sum(fc.batched(net.apply)(p, state, x, train=True)[0] ** 2)

  for program in (jax.make_jaxpr(loss)(params), jax.make_jaxpr(jax.grad(loss))(params)):
    assert "conv_general_dilated" not in str(program)
