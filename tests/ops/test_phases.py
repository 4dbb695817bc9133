"""Dilated convolutions by phases (`funconv.ops.phases`): the plan's choice, the space-to-batch
rearrangement, and the result against lax's native convolution under every padding, in 2-D and
3-D, forward and both gradients."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads

import funconv as fc
from funconv.ops import phases, plan, primitives
from tests.oracle import native_conv, native_conv_transpose
from tests.ops.test_conv import assert_close_with_grads
from tests.sweep import examples

PADDINGS = ["VALID", "SAME", "CIRCULAR", "REFLECT", "pairs"]
BOUND = ("funconv_conv", "funconv_conv_input_grad")
# The plan runs dilated convolutions by phases where Winograd would then run: on the CPU only.
ON_CPU = jax.default_backend() == "cpu"


def phase_of(fn, x, w, backend=None):
  """The phase `ConvSpec` by which the plan runs the convolution that `fn(x, w)` binds (`conv`'s
  forward, or the input gradient that `conv_transpose` binds) when lowered for `backend` (default:
  JAX's), or None."""
  (eqn,) = [e for e in jax.make_jaxpr(fn)(x, w).eqns if e.primitive.name in BOUND]
  spec = eqn.params["spec"]._replace(backend=backend or jax.default_backend())
  channels = primitives.INPUT_CHANNELS[eqn.primitive.name](*(v.aval.shape for v in eqn.invars), spec)
  return plan.phase_spec(spec, channels, eqn.invars[0].aval.dtype)


def phased_array_in(lowered, phase, examples, channels):
  """Whether the lowered program holds an array of phases `(examples, *phase.in_spatial, channels)`
  (`examples`: the batch times `prod(dilation)`)."""
  return "tensor<" + "x".join(map(str, (examples, *phase.in_spatial, channels))) + "xf32>" in lowered.as_text()


def test_space_to_batch_puts_each_phase_in_its_own_example_and_back():
  x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
  phased = phases.space_to_batch(x, (2, 3))
  assert phased.shape == (12, 2, 2, 3)
  np.testing.assert_array_equal(phased[1 * 6 + 1 * 3 + 2], x[1, 1::2, 2::3])
  np.testing.assert_array_equal(phases.batch_to_space(phased, (2, 3)), x)


def test_the_plan_runs_dilated_convolutions_by_phases_where_winograd_then_applies():
  x, w = jnp.zeros((4, 32, 32, 32)), jnp.zeros((3, 3, 32, 32))
  conv = lambda strides=1, algorithm=None: lambda x, w: fc.ops.conv(x, w, strides, "SAME", 2, algorithm=algorithm)
  phase = phase_of(conv(), x, w, "cpu")
  assert (phase.in_spatial, phase.dilation, phase.pads) == ((18, 18), (1, 1), ((0, 0), (0, 0)))
  assert plan.make_plan(phase, 16, 32, 32, jnp.float32).forward == "winograd"
  # Not where the undilated convolution would not run Winograd, nor when the caller names an algorithm.
  assert phase_of(conv(2), x, w, "cpu") is None and phase_of(conv(1, "hybrid"), x, w, "cpu") is None
  assert phase_of(conv(), x[..., :16], w[:, :, :16], "cpu") is None and phase_of(conv(), x, w, "cuda") is None
  assert phase_of(conv(), jnp.zeros((4, 64, 32)), jnp.zeros((3, 32, 32)), "cpu") is None
  assert phase_of(conv(), x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), "cpu") is None


def test_phases_are_decided_for_the_backend_lowered_for():
  # The 16 phases of 4 examples, 18x18 each, are in the CPU's program and not in a GPU's, whatever
  # the default backend of the machine that lowers it.
  x, w = jnp.zeros((4, 32, 32, 32)), jnp.zeros((3, 3, 32, 32))
  conv = lambda x, w: fc.ops.conv(x, w, padding="SAME", dilation=2)
  phase = phase_of(conv, x, w, "cpu")
  traced = jax.jit(jax.grad(lambda x, w: conv(x, w).sum(), (0, 1))).trace(x, w)
  assert phased_array_in(traced.lower(lowering_platforms=("cpu",)), phase, 16, 32)
  assert not phased_array_in(traced.lower(lowering_platforms=("cuda",)), phase, 16, 32)


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


@examples(25)
@given(configs())
def test_phases_match_native_forward_and_gradients(cfg):
  rng = np.random.default_rng(cfg["seed"])
  channels = plan.WINOGRAD_FROM_CHANNELS
  x = rng.standard_normal((cfg["batch"], *cfg["spatial"], channels), np.float32)
  w = rng.standard_normal((*(3,) * cfg["rank"], channels, cfg["c_out"]), np.float32)
  kwargs = dict(padding=cfg["padding"], dilation=cfg["dilation"])
  conv = lambda x, w: fc.ops.conv(x, w, **kwargs)
  assert phase_of(conv, x, w) or not ON_CPU  # this run goes by phases
  assert_close_with_grads(conv, lambda x, w: native_conv(x, w, **kwargs), x, w, rng)


# REFLECT's phases are SAME's on a reflected input (test_phases_match_native draws it among the paddings): its
# second order under -m slow (9 s on 2 cores).
@pytest.mark.parametrize("padding", ["SAME", pytest.param("REFLECT", marks=pytest.mark.slow)])
def test_check_grads_second_order_and_vmap(padding):
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (2, 10, 12, 32), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (3, 3, 32, 2), jnp.float64) / 10
    conv = lambda x, w: fc.ops.conv(x, w, padding=padding, dilation=(2, 3))
    assert phase_of(conv, x, w) or not ON_CPU
    check_grads(conv, (x, w), order=2, modes=("fwd", "rev"))
    np.testing.assert_allclose(jax.vmap(conv, (0, None))(x[:, None], w)[:, 0], conv(x, w), rtol=1e-12, atol=1e-12)
    kernels = jnp.stack([w, 2 * w])
    np.testing.assert_allclose(jax.vmap(conv, (None, 0))(x, kernels)[1], 2 * conv(x, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv(x, w), native_conv(x, w, padding=padding, dilation=(2, 3)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_a_dilated_transposed_convolution_goes_by_phases_too(padding):
  # conv_transpose binds the input gradient of a dilated convolution, which lowers by phases as well.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 12, 12, 3), np.float32)
  w = rng.standard_normal((3, 3, 3, 32), np.float32)
  transpose = lambda x, w: fc.ops.conv_transpose(x, w, 1, padding, 2)
  phase = phase_of(transpose, x, w, "cpu")  # the convolution it transposes maps 32 channels to 3
  assert phased_array_in(jax.jit(transpose).trace(x, w).lower(lowering_platforms=("cpu",)), phase, 8, 32)
  assert_close_with_grads(transpose, lambda x, w: native_conv_transpose(x, w, (1, 1), padding, (2, 2)), x, w, rng)
