"""`plan.make_plan`: the one decision per convolution call, and the primitives reading it."""

import jax
import jax.numpy as jnp
import pytest

import funconv as fc
from funconv.ops import plan as plan_module
from funconv.ops.conv import conv_spec


def make(x_shape, w_shape, strides=1, padding="SAME", groups=1, dtype=jnp.float32, algorithm=None):
  rank = len(w_shape) - 2
  x, w = jnp.zeros(x_shape, dtype), jnp.zeros(w_shape, dtype)
  strides = (strides,) * rank
  pairs, fill = fc.ops.resolve_padding(padding, x_shape[1:-1], w_shape[:-2], strides, (1,) * rank, "test")
  spec = conv_spec(x, w, strides, (1,) * rank, groups, pairs, fill, algorithm)
  return plan_module.make_plan(spec, x_shape[0], x_shape[-1], w_shape[-1], dtype)


@pytest.mark.parametrize(
  "x_shape,w_shape,strides,groups,expected",
  [
    ((128, 28, 28, 1), (5, 5, 1, 6), 1, 1, ("shifted", "col2im_in_place", "products")),  # LeNet-5 layer 1
    ((128, 16, 16, 32), (3, 3, 32, 32), 1, 1, ("winograd", "conv", "winograd")),  # 3x3 stride 1
    ((128, 32, 32, 16), (3, 3, 16, 16), 1, 1, ("hybrid", "conv", "products")),  # dx as a conv of g
    ((64, 56, 56, 64), (3, 3, 64, 64), 1, 1, ("winograd", "conv", "winograd")),
    ((64, 28, 28, 128), (3, 3, 128, 128), 2, 1, ("im2col", "col2im", "patches")),  # strided
    ((128, 32, 32, 32), (3, 3, 1, 32), 1, 32, ("shifted", "taps", "taps")),  # depthwise
    ((64, 1024, 32), (7, 32, 64), 1, 1, ("products", "conv", "taps")),  # 1-D, large
    ((128, 14, 14, 6), (3, 3, 6, 16), 1, 1, ("im2col", "col2im_in_place", "patches")),  # few channels
  ],
)
def test_the_plan_chooses_each_pass(x_shape, w_shape, strides, groups, expected):
  p = make(x_shape, w_shape, strides, groups=groups)
  assert (p.forward, p.input_grad, p.kernel_grad) == expected
  assert x_shape[0] % p.chunk == 0 and x_shape[0] % p.grad_chunk == 0 and x_shape[0] % p.input_grad_chunk == 0
  if groups == x_shape[-1] > 1:
    assert p.chunk == p.grad_chunk == x_shape[0]  # depthwise: never chunked


def test_chunks_follow_the_chunk_budget(monkeypatch):
  big = make((64, 56, 56, 64), (3, 3, 64, 64))
  assert big.chunk < 64
  monkeypatch.setattr(plan_module, "CHUNK_BYTES", 1)
  tiny = make((64, 56, 56, 64), (3, 3, 64, 64))
  assert tiny.chunk == tiny.grad_chunk == tiny.input_grad_chunk == 1


def test_sixteen_bit_floats_accumulate_in_float32():
  assert make((2, 8, 8, 4), (3, 3, 4, 4), dtype=jnp.bfloat16).accum == jnp.float32
  assert make((2, 8, 8, 4), (3, 3, 4, 4), dtype=jnp.float16).accum == jnp.float32
  assert make((2, 8, 8, 4), (3, 3, 4, 4), dtype=jnp.complex64).accum == jnp.complex64


def test_the_callers_algorithm_is_kept_and_grouped_ones_run_per_tap():
  assert make((2, 8, 8, 4), (3, 3, 4, 4), algorithm="products").forward == "products"
  assert make((2, 8, 8, 4), (3, 3, 2, 4), groups=2, algorithm="im2col").forward == "shifted"
  with pytest.raises(ValueError, match="unknown algorithm"):
    fc.ops.conv(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2)), algorithm="fft")
  with pytest.raises(ValueError, match="'winograd' computes ungrouped convolutions with 3-tap windows"):
    fc.ops.conv(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2)), 2, algorithm="winograd")


def test_gradients_use_the_fused_primitives():
  """grad in x and w is one cotangents primitive (one backward scan); in w alone, the kernel gradient."""
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 5))
  loss = lambda x, w: jnp.sum(fc.ops.conv(x, w, 1, "SAME") ** 2)
  names = lambda f, *a: [e.primitive.name for e in jax.make_jaxpr(f)(*a).eqns if "funconv" in e.primitive.name]
  assert names(jax.grad(loss, (0, 1)), x, w) == ["funconv_conv", "funconv_conv_cotangents"]
  assert names(jax.grad(loss, 1), x, w) == ["funconv_conv", "funconv_conv_kernel_grad"]
  assert names(lambda x, w: jax.jvp(lambda x, w: fc.ops.conv(x, w), (x, w), (x, w)), x, w) == [
    "funconv_conv",
    "funconv_conv_tangent",
  ]


def test_accelerators_get_their_own_plan():
  """Off the CPU: no batch chunks (a scan's steps would run one after another) and no Winograd
  (slower than hybrid on an H100: experiments/results/bench_conv_h100.json)."""
  x, w = jnp.zeros((64, 56, 56, 64)), jnp.zeros((3, 3, 64, 64))
  pairs, fill = fc.ops.resolve_padding("SAME", x.shape[1:-1], w.shape[:-2], (1, 1), (1, 1), "test")
  spec = conv_spec(x, w, (1, 1), (1, 1), 1, pairs, fill)._replace(backend="cuda")
  gpu = plan_module.make_plan(spec, 64, 64, 64, jnp.float32)
  assert gpu.forward != "winograd" and gpu.chunk == gpu.grad_chunk == 64
