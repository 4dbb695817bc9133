"""funconv.ops.conv and conv_transpose against lax's native convolution, forward and backward."""

import contextlib
import math

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads

import funconv as fc
from tests.oracle import native_conv, native_conv_transpose

from funconv.ops import plan, winograd
from tests.sweep import examples

PADDINGS = ["VALID", "SAME", "SAME_LOWER", "CIRCULAR", "REFLECT", "CAUSAL", "int", "pairs"]


@contextlib.contextmanager
def chunk_bytes(value):
  """Force the batch-chunking scan even on tiny inputs."""
  old, plan.CHUNK_BYTES = plan.CHUNK_BYTES, value
  try:
    yield
  finally:
    plan.CHUNK_BYTES = old


def lowered(f, *args):
  """The program XLA compiles for `f`: the primitives' lowerings, where the algorithms' loops are."""
  return jax.jit(f).lower(*args).as_text()


def tolerance(terms, a, b):
  """Float32 rounding of a sum of `terms` products of entries of `a` and `b`: Higham's bound (*Accuracy and
  Stability of Numerical Algorithms*, eq. 3.4) with the sum of the products' magnitudes at most `terms` times
  the largest, at about 8 eps (1e-6) each; the 1e-6 floor for sums of a few tiny products."""
  return 1e-6 * terms * float(np.abs(a).max(initial=0.0)) * float(np.abs(b).max(initial=0.0)) + 1e-6


@st.composite
def conv_configs(draw, transpose=False):
  rank = draw(st.sampled_from([1, 2, 3]))
  max_k = {1: 5, 2: 3, 3: 2}[rank]
  window = tuple(draw(st.integers(1, max_k)) for _ in range(rank))
  strides = tuple(draw(st.integers(1, 4)) for _ in range(rank))  # strides larger than the window too
  dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
  groups = 1 if transpose else draw(st.sampled_from([1, 1, 2, 3]))
  c_in = groups * draw(st.integers(1, 3))
  c_out = groups * draw(st.integers(1, 3))
  if not transpose and groups > 1 and draw(st.booleans()):
    c_in = groups  # depthwise, with channel multiplier c_out // groups
  if transpose:
    padding = draw(st.sampled_from(["VALID", "SAME", "int", "pairs"]))
  else:
    padding = draw(st.sampled_from([p for p in PADDINGS if p != "CAUSAL" or rank == 1]))
  reach = [d * (k - 1) + 1 for k, d in zip(window, dilation)]
  max_size = {1: 12, 2: 8, 3: 5}[rank]
  spatial = tuple(draw(st.integers(max(r, 1), max(r, 1) + max_size)) for r in reach)
  if padding == "int":
    padding = draw(st.integers(0, 2))
  elif padding == "pairs":
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
  elif padding == "REFLECT":
    spatial = tuple(max(n, r) for n, r in zip(spatial, reach))
  batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
  algorithm = draw(st.sampled_from([None, *plan.FORWARD_ALGORITHMS]))
  chunk = draw(st.sampled_from([plan.CHUNK_BYTES, 1]))
  seed = draw(st.integers(0, 2**16))
  return dict(
    rank=rank,
    window=window,
    strides=strides,
    dilation=dilation,
    groups=groups,
    c_in=c_in,
    c_out=c_out,
    padding=padding,
    spatial=spatial,
    batch=batch,
    algorithm=algorithm,
    chunk=chunk,
    seed=seed,
  )


def arrays(cfg, transpose=False):
  """NumPy inputs (eager jax.random would compile a program per new shape) and a seed for the cotangent."""
  rng = np.random.default_rng(cfg["seed"])
  x = rng.standard_normal((*cfg["batch"], *cfg["spatial"], cfg["c_in"]), np.float32)
  in_per_group = cfg["c_in"] if transpose else cfg["c_in"] // cfg["groups"]
  w = rng.standard_normal((*cfg["window"], in_per_group, cfg["c_out"]), np.float32)
  return x, w, rng


def value_and_input_grads(f, x, w, g):
  """`f(x, w)` and its input and kernel cotangents for output cotangent `g`, in one compiled program."""
  y, vjp = jax.vjp(f, x, w)
  return (y, *vjp(g))


def assert_close_with_grads(ours, native, x, w, rng):
  """Outputs, then input and kernel cotangents for a random output cotangent, agree.

  The oracle runs in float64: XLA's CPU convolution reads uninitialised memory in float32 for the
  input gradient of some over-padded transposed convolutions (a 2x2 window, pads ((2, 0), (1, 2))
  on a 2x2 input: values up to 1e33, different on every run), and is exact in float64.
  """
  shape = jax.eval_shape(native, x, w).shape
  g = rng.standard_normal(shape, np.float32)
  with jax.enable_x64(True):
    wide = [np.asarray(a, np.float64) for a in (x, w, g)]
    expected = [np.asarray(e, np.float32) for e in jax.jit(value_and_input_grads, static_argnums=0)(native, *wide)]
  actual = jax.jit(value_and_input_grads, static_argnums=0)(ours, x, w, g)
  chex.assert_shape(actual[0], shape)
  chex.assert_type(actual, jnp.float32)
  # The sums: an output's window taps and input channels; an input's cotangent's window taps and output channels;
  # a kernel entry's cotangent's batch and output positions.
  bounds = [
    tolerance(math.prod(w.shape[:-1]), x, w),
    tolerance(math.prod(w.shape[:-2]) * w.shape[-1], g, w),
    tolerance(g.size // max(g.shape[-1], 1), g, x),
  ]
  for got, want, bound in zip(actual, expected, bounds):
    np.testing.assert_allclose(got, want, atol=bound, rtol=1e-5)


def winograd_refused(cfg, groups):
  """Whether the config forces Winograd where it does not apply (then the call must say so)."""
  return cfg["algorithm"] == "winograd" and not winograd.applies(cfg["window"], cfg["strides"], cfg["dilation"], groups)


def run_conv(cfg):
  x, w, key = arrays(cfg)
  args = (cfg["strides"], cfg["padding"], cfg["dilation"], cfg["groups"])
  if winograd_refused(cfg, cfg["groups"]):
    with pytest.raises(ValueError, match="winograd"):
      fc.ops.conv(x, w, *args, algorithm=cfg["algorithm"])
    return
  with chunk_bytes(cfg["chunk"]):
    try:
      expected_shape = jax.eval_shape(lambda x, w: native_conv(x, w, *args), x, w).shape
    except Exception:  # the oracle rejects it too (window larger than the padded input)
      with pytest.raises(ValueError, match="conv"):
        fc.ops.conv(x, w, *args, algorithm=cfg["algorithm"])
      return
    if min(expected_shape, default=1) == 0:
      with pytest.raises(ValueError, match="larger than the padded input"):
        fc.ops.conv(x, w, *args, algorithm=cfg["algorithm"])
      return
    assert_close_with_grads(
      lambda x, w: fc.ops.conv(x, w, *args, algorithm=cfg["algorithm"]),
      lambda x, w: native_conv(x, w, *args),
      x,
      w,
      key,
    )


@examples(250)
@given(conv_configs())
def test_conv_matches_native_forward_and_gradients(cfg):
  run_conv(cfg)


@examples(80)
@given(conv_configs(transpose=True))
def test_conv_transpose_matches_native_forward_and_gradients(cfg):
  x, w, key = arrays(cfg, transpose=True)
  args = (cfg["strides"], cfg["padding"], cfg["dilation"])
  try:
    expected = jax.eval_shape(lambda x, w: native_conv_transpose(x, w, *args), x, w).shape
  except Exception:
    expected = (0,)
  if min(expected) < 1:
    with pytest.raises(ValueError, match="conv_transpose"):
      fc.ops.conv_transpose(x, w, *args)
    return
  if winograd_refused(cfg, 1):
    with pytest.raises(ValueError, match="winograd"):
      fc.ops.conv_transpose(x, w, *args, algorithm=cfg["algorithm"])
    return
  with chunk_bytes(cfg["chunk"]):
    assert_close_with_grads(
      lambda x, w: fc.ops.conv_transpose(x, w, *args, algorithm=cfg["algorithm"]),
      lambda x, w: native_conv_transpose(x, w, *args),
      x,
      w,
      key,
    )


@pytest.mark.parametrize("algorithm", [a for a in plan.FORWARD_ALGORITHMS if a != "winograd"])  # test_winograd.py
@pytest.mark.parametrize("groups,c_in", [(1, 4), (2, 4), (4, 4)])
def test_check_grads_second_order(algorithm, groups, c_in):
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, c_in), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (3, 2, c_in // groups, 4), jnp.float64)
    with chunk_bytes(1):
      check_grads(
        lambda x, w: fc.ops.conv(x, w, (2, 1), "SAME", (1, 2), groups, algorithm=algorithm),
        (x, w),
        order=2,
        modes=("rev",),
      )
      check_grads(
        lambda x, w: fc.ops.conv_transpose(x, w[..., : c_in // groups, :].swapaxes(-1, -2)[..., :c_in], (2, 1), "SAME"),
        (x, w),
        order=1,
        modes=("rev",),
      )


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_big_enough_to_chunk_matches_native(rank):
  """Shapes large enough that the default chunking scans over the batch."""
  spatial = {1: (8192,), 2: (48, 48), 3: (8, 8, 8)}[rank]
  rng = np.random.default_rng(rank)
  x = rng.standard_normal((16, *spatial, 16), np.float32)
  w = rng.standard_normal((*(3,) * rank, 16, 8), np.float32)
  assert "stablehlo.while" in lowered(lambda x, w: fc.ops.conv(x, w, 1, "SAME"), x, w)
  assert_close_with_grads(
    lambda x, w: fc.ops.conv(x, w, 1, "SAME"),
    lambda x, w: native_conv(x, w, (1,) * rank, "SAME", (1,) * rank, 1),
    x,
    w,
    rng,
  )


def test_output_shape_rule():
  assert fc.ops.conv_output_size(28, 5) == 24
  assert fc.ops.conv_output_size(32, 3, 2, (1, 1)) == 16
  assert fc.ops.conv_output_size(32, 3, 1, (0, 0), dilation=2) == 28
  assert fc.ops.conv_output_size(7, 3, 3, (1, 1)) == 3  # (W - K + 2P) / S + 1, floored
  assert fc.ops.conv_output_shape((28, 28), (5, 5)) == (24, 24)
  assert fc.ops.conv_output_shape((32, 31), (3, 3), strides=2, padding="SAME") == (16, 16)
  assert fc.ops.conv_output_shape((32,), (3,), padding=1, dilation=2) == (30,)
  x, w = jnp.ones((1, 17, 9, 2)), jnp.ones((3, 2, 2, 4))
  assert fc.ops.conv(x, w, (2, 1), "SAME_LOWER", (2, 3)).shape[1:3] == fc.ops.conv_output_shape(
    (17, 9), (3, 2), (2, 1), "SAME_LOWER", (2, 3)
  )


@pytest.mark.parametrize(
  "call,error,match",
  [
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 4, 8))), ValueError, "groups \\* w.shape"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 8)), strides=0), ValueError, "strides"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 8)), padding="FULL"), ValueError, "unknown padding"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3), jnp.int32), jnp.ones((3, 3, 3, 8))), TypeError, "floating"),
    (lambda: fc.ops.conv(jnp.ones((2, 2, 3)), jnp.ones((3, 3, 3, 8))), ValueError, "larger than the padded input"),
    (lambda: fc.ops.conv(jnp.ones((8, 3)), jnp.ones((3, 3, 3, 8))), ValueError, "spatial axes"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 4)), jnp.ones((3, 3, 2, 6)), groups=4), ValueError, "groups=4"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 8)), padding="CAUSAL"), ValueError, "1-D"),
    (lambda: fc.ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 8)), dilation=(1, 2, 3)), ValueError, "dilation"),
    (lambda: fc.ops.conv_transpose(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 4, 8))), ValueError, "channels"),
    (
      lambda: fc.ops.conv_transpose(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 8)), padding="CIRCULAR"),
      ValueError,
      "padding",
    ),
  ],
)
def test_bad_input_raises_clear_error(call, error, match):
  with pytest.raises(error, match=match):
    call()


@pytest.mark.parametrize("rank", [1, 2])
def test_a_window_covering_the_input_is_a_dense_layer(rank):
  """LeNet-5's last convolution (5x5 on 5x5) and a decoder's first transposed one (from 1x1)."""
  rng = np.random.default_rng(rank)
  x = rng.standard_normal((3, *(5,) * rank, 4), np.float32)
  w = rng.standard_normal((*(5,) * rank, 4, 6), np.float32)
  assert_close_with_grads(
    lambda x, w: fc.ops.conv(x, w), lambda x, w: native_conv(x, w, (1,) * rank, "VALID", (1,) * rank, 1), x, w, rng
  )
  z = rng.standard_normal((3, *(1,) * rank, 4), np.float32)
  assert_close_with_grads(
    lambda z, w: fc.ops.conv_transpose(z, w, padding="VALID"),
    lambda z, w: native_conv_transpose(z, w, (1,) * rank, "VALID", (1,) * rank),
    z,
    w,
    rng,
  )


@pytest.mark.parametrize("algorithm", ["products", "hybrid"])
@pytest.mark.parametrize("padding", ["SAME", "CIRCULAR", "REFLECT", ((3, 0), (0, 2))])
@pytest.mark.parametrize("dilation,groups", [(1, 1), (2, 2)])
def test_input_gradient_as_a_convolution(algorithm, padding, dilation, groups):
  """Stride 1 with C >= INPUT_GRAD_BY_CONV_FROM_CHANNELS: dx is a forward conv of the cotangent."""
  channels = plan.INPUT_GRAD_BY_CONV_FROM_CHANNELS
  rng = np.random.default_rng(dilation)
  x = rng.standard_normal((2, 9, 10, channels), np.float32)
  w = rng.standard_normal((3, 2, channels // groups, 4), np.float32)
  assert_close_with_grads(
    lambda x, w: fc.ops.conv(x, w, 1, padding, dilation, groups, algorithm=algorithm),
    lambda x, w: native_conv(x, w, 1, padding, dilation, groups),
    x,
    w,
    rng,
  )


@pytest.mark.parametrize(
  "rank,strides,dilation,padding",
  [
    (1, 1, 2, "SAME"),
    (2, 1, 1, "SAME"),
    (2, (2, 1), (1, 2), "REFLECT"),
    (2, 2, 1, ((1, 0), (2, 1))),
    (3, (1, 2, 1), 1, "CIRCULAR"),
  ],
)
def test_patch_matrix_filled_in_place(rank, strides, dilation, padding):
  """im2col fills its patch matrix tap by tap in a loop, whatever the channels."""
  channels = 1 + rank
  rng = np.random.default_rng(rank)
  x = rng.standard_normal((3, *(7, 6, 5)[:rank], channels), np.float32)
  w = rng.standard_normal((*(3, 2, 3)[:rank], channels, 4), np.float32)
  ours = lambda x, w: fc.ops.conv(x, w, strides, padding, dilation, algorithm="im2col")
  assert "stablehlo.while" in lowered(ours, x, w)  # the loop over taps (too small to chunk)
  with chunk_bytes(1):
    assert_close_with_grads(ours, lambda x, w: native_conv(x, w, strides, padding, dilation), x, w, rng)
  with jax.enable_x64(True):
    check_grads(ours, (x.astype(np.float64)[:1], w.astype(np.float64)), order=2, modes=("rev",))
