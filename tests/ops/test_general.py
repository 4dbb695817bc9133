"""The lax.conv_general_dilated drop-in: any layout, input dilation, groups, batch groups."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax import lax

import funconv as fc
from tests.oracle import assert_close_to_largest, sum_error_bound
from tests.sweep import examples

LAYOUTS_2D = [
  None,
  ("NHWC", "HWIO", "NHWC"),
  ("NCHW", "OIHW", "NCHW"),
  ("NHWC", "OIHW", "NCHW"),
  ("CHWN", "IOHW", "HWNC"),
]


def _shape(spec, logical):
  """Physical shape for a layout string given sizes by letter."""
  return tuple(logical[c] for c in spec)


@st.composite
def general_configs(draw):
  layout = draw(st.sampled_from(LAYOUTS_2D))
  lhs_spec, rhs_spec, _ = layout or ("NCHW", "OIHW", "NCHW")
  fgc = draw(st.sampled_from([1, 2]))
  bgc = 1 if fgc > 1 else draw(st.sampled_from([1, 2]))
  n, c, o = bgc * draw(st.integers(1, 2)), fgc * draw(st.integers(1, 2)), fgc * bgc * draw(st.integers(1, 2))
  kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
  lhs_dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
  rhs_dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
  strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
  if lhs_dilation == (1, 1) and draw(st.booleans()):
    padding = draw(st.sampled_from(["SAME", "VALID", "SAME_LOWER"]))
  else:
    padding = [(draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(2)]
  h, w = draw(st.integers(4, 8)), draw(st.integers(4, 8))
  rng = np.random.default_rng(draw(st.integers(0, 999)))
  lhs = rng.standard_normal(_shape(lhs_spec, dict(N=n, C=c, H=h, W=w)), np.float32)
  rhs = rng.standard_normal(_shape(rhs_spec, dict(O=o, I=c // fgc, H=kh, W=kw)), np.float32)
  return (
    lhs,
    rhs,
    dict(
      window_strides=strides,
      padding=padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=layout,
      feature_group_count=fgc,
      batch_group_count=bgc,
    ),
  )


@examples(60)
@given(general_configs())
def test_drop_in_matches_lax(cfg):
  lhs, rhs, kwargs = cfg
  try:
    shape = jax.eval_shape(lambda a, b: lax.conv_general_dilated(a, b, **kwargs), lhs, rhs).shape
  except (ValueError, TypeError):
    return  # a configuration lax itself rejects (e.g. empty output)
  if min(shape) == 0:
    return
  cotangent = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  expected = value_and_grads(lax.conv_general_dilated, lhs, rhs, cotangent, kwargs)
  actual = value_and_grads(fc.ops.conv_general_dilated, lhs, rhs, cotangent, kwargs)
  # The longest of the three sums: a window's products (output), the kernel taps and output channels that
  # reach one input (its cotangent), or the batch and output positions (the kernel's cotangent).
  terms = max(math.prod(rhs.shape), math.prod(shape))
  assert_close_to_largest(actual, expected, 2 * sum_error_bound(terms))


def value_and_grads(conv, lhs, rhs, cotangent, kwargs):
  """Output and both input cotangents for the output cotangent `cotangent`, compiled as one program."""

  def run(lhs, rhs):
    y, vjp = jax.vjp(lambda a, b: conv(a, b, **kwargs), lhs, rhs)
    return (y, *vjp(cotangent))

  return jax.jit(run)(lhs, rhs)


def test_preferred_element_type_and_errors():
  x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
  assert fc.ops.conv_general_dilated(x, w, (1, 1), "SAME", preferred_element_type=jnp.float16).dtype == jnp.float16
  with pytest.raises(ValueError, match="string padding"):
    fc.ops.conv_general_dilated(x, w, (1, 1), "SAME", lhs_dilation=(2, 2))


def test_flax_nnx_conv_runs_on_the_drop_in():
  nnx = pytest.importorskip("flax.nnx")
  kwargs = dict(
    in_features=3, out_features=8, kernel_size=(3, 3), strides=(2, 1), padding="SAME", feature_group_count=1
  )
  ours = nnx.Conv(conv_general_dilated=fc.ops.conv_general_dilated, rngs=nnx.Rngs(0), **kwargs)
  native = nnx.Conv(rngs=nnx.Rngs(0), **kwargs)
  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
  assert_close_to_largest(ours(x), native(x), 2 * sum_error_bound(3 * 3 * 3))
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))
  # The kernel's cotangent sums 2 y x over the 2 x 5 x 9 output positions, each y a sum of 27 products.
  bound = 2 * sum_error_bound(2 * 5 * 9 + 27)
  assert_close_to_largest(grads(ours)["kernel"][...], grads(native)["kernel"][...], bound)
  graphdef, state = nnx.split(ours)
  loss = lambda state, x: jnp.sum(nnx.merge(graphdef, state)(x) ** 2)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss))(state, x))
  assert "funconv_conv" in jaxpr and "conv_general_dilated" not in jaxpr
