"""Winograd's algorithm (`funconv.ops.winograd`) against lax's native convolution: both tile sizes,
1-, 2- and 3-D, every padding, forward and both gradients, and its float32 error."""

import contextlib

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads

import funconv as fc
from tests.oracle import native_conv
from funconv.ops import plan
from tests.ops.test_conv import assert_close_with_grads, chunk_bytes
from tests.sweep import examples

PADDINGS = ["VALID", "SAME", "CIRCULAR", "REFLECT", "pairs"]


@contextlib.contextmanager
def tile(m):
  """Winograd F(m, 3) whatever the plan would choose."""
  old, plan.winograd_tile = plan.winograd_tile, lambda spec, dtype: m
  try:
    yield
  finally:
    plan.winograd_tile = old


@st.composite
def configs(draw):
  rank = draw(st.sampled_from([1, 2, 3]))
  padding = draw(st.sampled_from(PADDINGS))
  spatial = tuple(draw(st.integers(3, {1: 19, 2: 11, 3: 6}[rank])) for _ in range(rank))
  if padding == "pairs":
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
  return dict(
    rank=rank,
    padding=padding,
    spatial=spatial,
    batch=draw(st.integers(1, 4)),
    c_in=draw(st.integers(1, 5)),
    c_out=draw(st.integers(1, 5)),
    tile=draw(st.sampled_from([2, 4])),
    chunk=draw(st.sampled_from([plan.CHUNK_BYTES, 1])),
    seed=draw(st.integers(0, 2**16)),
  )


@examples(40)
@given(configs())
def test_winograd_matches_native_forward_and_gradients(cfg):
  rng = np.random.default_rng(cfg["seed"])
  x = rng.standard_normal((cfg["batch"], *cfg["spatial"], cfg["c_in"]), np.float32)
  w = rng.standard_normal((*(3,) * cfg["rank"], cfg["c_in"], cfg["c_out"]), np.float32)
  ours = lambda x, w: fc.ops.conv(x, w, 1, cfg["padding"], algorithm="winograd")
  with tile(cfg["tile"]), chunk_bytes(cfg["chunk"]):
    assert_close_with_grads(ours, lambda x, w: native_conv(x, w, 1, cfg["padding"]), x, w, rng)


@pytest.mark.parametrize("m", [2, 4])
def test_check_grads_second_order(m):
  """Forward- and reverse-mode derivatives to second order, in float64 (the transforms are exact there)."""
  with jax.enable_x64(True), tile(m):
    x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4), jnp.float64)
    check_grads(lambda x, w: fc.ops.conv(x, w, 1, "SAME", algorithm="winograd"), (x, w), order=2)
    check_grads(lambda x, w: fc.ops.conv_transpose(x, w, 1, "SAME", algorithm="winograd"), (x, w), order=1)


@pytest.mark.parametrize("rank,m,bound", [(1, 4, 1e-6), (2, 2, 1e-6), (2, 4, 5e-6), (3, 2, 1e-6), (3, 4, 3e-5)])
def test_float32_error_against_a_float64_oracle(rank, m, bound):
  """The largest error relative to the largest output: F(2, 3) about the direct sum's (2e-7), F(4, 3)
  about 10x that in 2-D and 30x in 3-D (Barabasz et al. 2018), which is why 3-D uses F(2, 3)."""
  rng = np.random.default_rng(rank)
  x = rng.standard_normal((4, *(12,) * rank, 16))
  w = rng.standard_normal((*(3,) * rank, 16, 16))
  with jax.enable_x64(True):
    exact = np.asarray(native_conv(jnp.asarray(x), jnp.asarray(w), 1, "SAME"))
  with tile(m):
    y = fc.ops.conv(x.astype(np.float32), w.astype(np.float32), 1, "SAME", algorithm="winograd")
  assert float(np.max(np.abs(y - exact)) / np.max(np.abs(exact))) < bound


def test_the_plan_chooses_winograd_where_it_applies():
  x, w = jnp.zeros((8, 16, 16, 32)), jnp.zeros((3, 3, 32, 32))
  spec = lambda x, w, **kw: jax.make_jaxpr(lambda x, w: fc.ops.conv(x, w, **kw))(x, w).eqns[-1].params["spec"]
  chosen = lambda x, w, **kw: plan.make_plan(spec(x, w, **kw), x.shape[0], x.shape[-1], w.shape[-1], x.dtype)
  assert (chosen(x, w, padding="SAME").forward, chosen(x, w, padding="SAME").tile) == ("winograd", 4)
  assert chosen(x, w, strides=2).forward != "winograd"
  assert chosen(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).forward != "winograd"
  x3, w3 = jnp.zeros((2, 8, 8, 8, 32)), jnp.zeros((3, 3, 3, 32, 32))
  assert chosen(x3, w3).tile == 2
