"""Dilated convolutions by phases (`funconv.ops.phases`): the plan's choice, the space-to-batch
rearrangement, and the result against lax's native convolution under every padding, in 2-D and
3-D, forward and both gradients."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

import funconv as fc
from funconv.ops import phases, plan
from tests.oracle import native_conv
from tests.ops.test_conv import assert_close_with_grads

PADDINGS = ["VALID", "SAME", "CIRCULAR", "REFLECT", "pairs"]
# The plan runs dilated convolutions by phases where Winograd would then run: on the CPU only.
ON_CPU = jax.default_backend() == "cpu"


def bound_spec(x, w, **kwargs):
  """The `ConvSpec` that `fc.ops.conv` binds for these arguments (the only `funconv_conv` equation)."""
  jaxpr = jax.make_jaxpr(lambda x, w: fc.ops.conv(x, w, **kwargs))(x, w)
  (spec,) = [eqn.params["spec"] for eqn in jaxpr.eqns if eqn.primitive.name == "funconv_conv"]
  return spec


def test_space_to_batch_puts_each_phase_in_its_own_example_and_back():
  x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
  phased = phases.space_to_batch(x, (2, 3))
  assert phased.shape == (12, 2, 2, 3)
  np.testing.assert_array_equal(phased[1 * 6 + 1 * 3 + 2], x[1, 1::2, 2::3])
  np.testing.assert_array_equal(phases.batch_to_space(phased, (2, 3)), x)


@pytest.mark.skipif(not ON_CPU, reason="the plan chooses phases (and Winograd) on the CPU")
def test_the_plan_runs_dilated_convolutions_by_phases_where_winograd_then_applies():
  x, w = jnp.zeros((4, 32, 32, 32)), jnp.zeros((3, 3, 32, 32))
  spec = bound_spec(x, w, padding="SAME", dilation=2)
  assert (spec.in_spatial, spec.dilation, spec.pads) == ((18, 18), (1, 1), ((0, 0), (0, 0)))
  assert plan.make_plan(spec, 16, 32, 32, jnp.float32).forward == "winograd"
  # Not where the undilated convolution would not run Winograd, nor when the caller names an algorithm.
  for kwargs in [dict(strides=2), dict(algorithm="hybrid")]:
    assert bound_spec(x, w, padding="SAME", dilation=2, **kwargs).dilation == (2, 2)
  assert bound_spec(x[..., :16], w[:, :, :16], padding="SAME", dilation=2).dilation == (2, 2)
  assert bound_spec(jnp.zeros((4, 64, 32)), jnp.zeros((3, 32, 32)), padding="SAME", dilation=2).dilation == (2,)
  assert bound_spec(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), dilation=2).dilation == (2, 2)


@st.composite
def configs(draw):
  """Sizes at which each phase has Winograd's minimum of outputs, so that the plan goes by phases."""
  rank = draw(st.sampled_from([2, 3]))
  padding = draw(st.sampled_from(PADDINGS))
  dilation = tuple(draw(st.integers(1, {2: 3, 3: 2}[rank])) for _ in range(rank))
  dilation = dilation if any(d > 1 for d in dilation) else (2,) * rank
  outputs = {2: 4, 3: 3}[rank]  # per axis and phase: 4^2 or 3^3 >= WINOGRAD_FROM_OUTPUTS
  unpadded = padding in ("VALID", "pairs")
  spatial = tuple(draw(st.integers(d * (outputs + 2 * unpadded), d * (outputs + 2 * unpadded) + 3)) for d in dilation)
  if padding == "pairs":
    padding = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(rank))  # < 0 crops
  return dict(
    rank=rank,
    padding=padding,
    spatial=spatial,
    dilation=dilation,
    batch=draw(st.integers(1, 3)),
    c_out=draw(st.integers(1, 4)),
    seed=draw(st.integers(0, 2**16)),
  )


@settings(max_examples=25, deadline=None)
@given(configs())
def test_phases_match_native_forward_and_gradients(cfg):
  rng = np.random.default_rng(cfg["seed"])
  channels = plan.WINOGRAD_FROM_CHANNELS
  x = rng.standard_normal((cfg["batch"], *cfg["spatial"], channels), np.float32)
  w = rng.standard_normal((*(3,) * cfg["rank"], channels, cfg["c_out"]), np.float32)
  kwargs = dict(padding=cfg["padding"], dilation=cfg["dilation"])
  assert bound_spec(x, w, **kwargs).dilation == (1,) * cfg["rank"] or not ON_CPU
  assert_close_with_grads(lambda x, w: fc.ops.conv(x, w, **kwargs), lambda x, w: native_conv(x, w, **kwargs), x, w, rng)


@pytest.mark.parametrize("padding", ["SAME", "REFLECT"])
def test_check_grads_second_order_and_vmap(padding):
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (2, 10, 12, 32), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (3, 3, 32, 2), jnp.float64) / 10
    conv = lambda x, w: fc.ops.conv(x, w, padding=padding, dilation=(2, 3))
    assert bound_spec(x, w, padding=padding, dilation=(2, 3)).dilation == (1, 1) or not ON_CPU
    check_grads(conv, (x, w), order=2, modes=("fwd", "rev"))
    np.testing.assert_allclose(jax.vmap(conv, (0, None))(x[:, None], w)[:, 0], conv(x, w), rtol=1e-12, atol=1e-12)
    kernels = jnp.stack([w, 2 * w])
    np.testing.assert_allclose(jax.vmap(conv, (None, 0))(x, kernels)[1], 2 * conv(x, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv(x, w), native_conv(x, w, padding=padding, dilation=(2, 3)), rtol=1e-10, atol=1e-10)
