"""Pooling against lax.reduce_window, forward and backward."""

import math

import chex
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


def native_pool(x, init, reducer, window, strides, padding):
  rank = len(window)
  pads = fc.ops.resolve_padding(padding, x.shape[-rank - 1 : -1], window, strides, (1,) * rank, "oracle")[0]
  lead = x.ndim - rank - 1
  return lax.reduce_window(
    x,
    init,
    reducer,
    (1,) * lead + window + (1,),
    (1,) * lead + strides + (1,),
    ((0, 0),) * lead + tuple(pads) + ((0, 0),),
  )


@st.composite
def pool_configs(draw):
  rank = draw(st.sampled_from([1, 2, 3]))
  window = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  strides = window if draw(st.booleans()) else tuple(draw(st.integers(1, 4)) for _ in range(rank))
  padding = draw(st.sampled_from(["VALID", "SAME", "pairs"]))
  if padding == "pairs":
    padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in window)
  spatial = tuple(draw(st.integers(k, k + 6)) for k in window)
  batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
  c = draw(st.integers(1, 3))
  x = np.random.default_rng(draw(st.integers(0, 999))).standard_normal((*batch, *spatial, c), np.float32)
  return x, window, strides, padding


def value_and_grad(f, x, cotangent):
  """`f(x)` and the input cotangent for the output cotangent `cotangent`, compiled as one program."""
  y, vjp = jax.vjp(f, x)
  return y, vjp(cotangent)[0]


@examples(60)
@given(pool_configs())
def test_pools_match_reduce_window(cfg):
  x, window, strides, padding = cfg
  size = float(np.prod(window))
  cases = [
    (fc.ops.max_pool, lambda x: native_pool(x, -jnp.inf, lax.max, window, strides, padding)),
    (fc.ops.sum_pool, lambda x: native_pool(x, 0.0, lax.add, window, strides, padding)),
    (fc.ops.avg_pool, lambda x: native_pool(x, 0.0, lax.add, window, strides, padding) / size),
    (fc.ops.l2_pool, lambda x: jnp.sqrt(native_pool(x**2, 0.0, lax.add, window, strides, padding))),
  ]
  compiled = jax.jit(value_and_grad, static_argnums=0)
  shape = jax.eval_shape(cases[0][1], x).shape
  cotangent = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  # A window's sum, then a square root or a division; an input's cotangent sums over the windows that cover
  # it (l2's terms x / y each a few roundings).
  covering = math.prod(-(-k // s) for k, s in zip(window, strides))
  bound = 2 * sum_error_bound(math.prod(window) + covering + 3)
  for ours, native in cases:
    # Random normals have no ties, so max's gradient is unambiguous.
    y, dx = compiled(lambda x: ours(x, window, strides, padding), x, cotangent)
    y_ref, dx_ref = compiled(native, x, cotangent)
    chex.assert_equal_shape([y, y_ref])
    assert_close_to_largest((y, dx), (y_ref, dx_ref), bound)


def test_avg_pool_can_exclude_padding():
  y = fc.ops.avg_pool(jnp.ones((5, 5, 1)), (3, 3), padding="SAME", count_include_pad=False)
  np.testing.assert_allclose(y, 1.0)
  corner = fc.ops.avg_pool(jnp.ones((5, 5, 1)), (3, 3), padding="SAME")[0, 0, 0]
  np.testing.assert_allclose(corner, 4 / 9)


def test_global_pools():
  x = jax.random.normal(jax.random.key(0), (2, 3, 5, 6, 4))
  np.testing.assert_allclose(fc.ops.global_avg_pool(x), x.mean(axis=(2, 3)), rtol=1e-6)
  np.testing.assert_allclose(fc.ops.global_max_pool(x, rank=3), x.max(axis=(1, 2, 3)))


@pytest.mark.parametrize(
  "call,error,match",
  [
    (lambda: fc.ops.max_pool(jnp.ones((4, 4, 1)), (5, 5)), ValueError, "larger than the padded input"),
    (lambda: fc.ops.max_pool(jnp.ones((4, 4, 1)), (2, 2), strides=(0, 1)), ValueError, "strides"),
    (lambda: fc.ops.avg_pool(jnp.ones((4, 4, 1)), (2, 2), padding="HALF"), ValueError, "unknown padding"),
    (lambda: fc.ops.max_pool(jnp.ones((4, 4, 1), jnp.int32), (2, 2)), TypeError, "floating"),
    (lambda: fc.ops.global_avg_pool(jnp.ones((4, 4))), ValueError, "spatial axes"),
  ],
)
def test_bad_input_raises_clear_error(call, error, match):
  with pytest.raises(error, match=match):
    call()
