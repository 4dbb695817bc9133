"""DESIGN.md section 1: no conv_general_dilated primitive in the forward or gradient program."""
import jax
import jax.numpy as jnp

import funconv as fc


def small_network(params, x):
  w1, w2, w3, wd = params
  h = jax.nn.relu(fc.ops.conv(x, w1, padding="SAME"))
  h = fc.ops.max_pool(h, (2, 2), (2, 2))
  h = jax.nn.relu(fc.ops.conv(h, w2, strides=2, padding="SAME", groups=2))
  h = fc.ops.conv_transpose(h, w3, strides=2, padding="SAME")
  h = fc.ops.avg_pool(h, (3, 3), padding="SAME")
  return fc.ops.global_avg_pool(h) @ wd


def test_forward_and_gradient_jaxprs_have_no_native_convolution():
  keys = jax.random.split(jax.random.key(0), 5)
  params = (jax.random.normal(keys[0], (3, 3, 1, 8)), jax.random.normal(keys[1], (3, 3, 4, 8)),
            jax.random.normal(keys[2], (4, 4, 8, 4)), jax.random.normal(keys[3], (4, 10)))
  x = jax.random.normal(keys[4], (4, 16, 16, 1))
  loss = lambda p, x: jnp.sum(small_network(p, x) ** 2)
  for program in (jax.make_jaxpr(small_network)(params, x), jax.make_jaxpr(jax.grad(loss))(params, x)):
    text = str(program)
    assert "dot_general" in text
    assert "conv_general_dilated" not in text
