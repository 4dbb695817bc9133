"""DESIGN.md section 1: no conv_general_dilated primitive in the forward or derivative programs, and no
convolution in what they lower to."""

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


def test_forward_and_derivative_programs_have_no_native_convolution():
  keys = jax.random.split(jax.random.key(0), 5)
  params = (
    jax.random.normal(keys[0], (3, 3, 1, 8)),
    jax.random.normal(keys[1], (3, 3, 4, 8)),
    jax.random.normal(keys[2], (4, 4, 8, 4)),
    jax.random.normal(keys[3], (4, 10)),
  )
  x = jax.random.normal(keys[4], (4, 16, 16, 1))
  loss = lambda p, x: jnp.sum(small_network(p, x) ** 2)
  grad = jax.grad(loss)
  jvp = lambda p, x: jax.jvp(lambda p: loss(p, x), (p,), (p,))[1]
  hvp = lambda p, x: jax.jvp(lambda p: grad(p, x), (p,), (p,))[1]  # forward over reverse
  for program in (small_network, grad, jvp, hvp):
    jaxpr = str(jax.make_jaxpr(program)(params, x))
    assert "funconv_conv" in jaxpr
    assert "conv_general_dilated" not in jaxpr
    hlo = jax.jit(program).lower(params, x).as_text()
    assert "stablehlo.dot_general" in hlo
    assert "convolution" not in hlo
