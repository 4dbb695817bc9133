"""The plan of one convolution: which algorithm each pass runs and over how many examples at a time.

`make_plan` is the one place these are decided (and `phase_spec` whether a dilated convolution
runs undilated over its input's phases, `funconv.ops.phases`), from the shapes of the forward convolution (its
`ConvSpec` plus batch, channels and dtype); the forward, input-gradient and kernel-gradient kernels
(`funconv.ops.algorithms`) each read their part. The thresholds are measurements
(experiments/bench_conv.py and bench_train.py; docs/convolution.md).
"""

import math
import os
from typing import NamedTuple

import jax.numpy as jnp

from funconv.ops import winograd
from funconv.ops.shapes import output_shape, window_reach

FORWARD_ALGORITHMS = ("im2col", "shifted", "products", "hybrid", "winograd")
# Patch-matrix bytes of one batch chunk: about a core's L2 cache per core XLA runs on was fastest
# when measured (4 MiB on 2 cores; 16 cores need chunks 8x larger to keep them all busy).
CHUNK_BYTES = (1 << 21) * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1 << 22
# Input elements per example (padded positions times channels) from which a stride-1 1-D forward
# computes all tap products in one GEMM rather than building the patch matrix (measured).
PRODUCTS_FROM_ELEMENTS = 1 << 15
# A stride-1 convolution of 2+ spatial axes uses "hybrid" from this padded length of its last axis
# and this GEMM depth (gathered taps times channels); below, im2col (LeNet-5's 14x14x6; measured).
HYBRID_FROM_LENGTH = 24
HYBRID_FROM_DEPTH = 8
# Input channels below which a stride-1 col2im adds tap by tap in place (measured).
COL2IM_IN_PLACE_BELOW_CHANNELS = 8
# Input channels from which a 3-tap stride-1 convolution runs Winograd's algorithm (measured: 1.8-2.9x
# native forward+backward on rows 3-5 of bench_conv, 2x slower than hybrid at 16 channels), and output
# positions per example below which its tiles would be mostly padding (a bound, not a measurement).
WINOGRAD_FROM_CHANNELS = 32
WINOGRAD_FROM_OUTPUTS = 16
# Input channels from which a stride-1 input gradient is a convolution of the cotangent (measured).
INPUT_GRAD_BY_CONV_FROM_CHANNELS = 8


class ConvSpec(NamedTuple):
  """The static parameters of a convolution, shared by its three primitives (forward, input
  gradient, kernel gradient): everything but the batch size, the channels and the arrays."""

  in_spatial: tuple[int, ...]  # spatial shape of the unpadded input
  window: tuple[int, ...]
  strides: tuple[int, ...]
  dilation: tuple[int, ...]
  groups: int
  pads: tuple[tuple[int, int], ...]  # (low, high) per spatial axis
  fill: str  # "constant", "wrap" or "reflect"
  algorithm: str | None  # the caller's forward algorithm, None to choose by shape
  precision: object  # passed to every lax.dot_general
  backend: str = "cpu"  # the platform lowered for, set by the primitives' lowering

  @property
  def padded(self):
    return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_spatial, self.pads))

  @property
  def out(self):
    """Spatial output shape (0 where the window does not fit, as in lax)."""
    no_pads = ((0, 0),) * len(self.window)
    return tuple(max(0, o) for o in output_shape(self.padded, self.window, self.strides, no_pads, self.dilation))


class Plan(NamedTuple):
  """What each pass of one convolution runs. `padded`, `out`, `pads` and `fill` describe the input
  as each chunk pads it; `accum` is the dtype products accumulate in."""

  strides: tuple[int, ...]
  dilation: tuple[int, ...]
  groups: int
  padded: tuple[int, ...]
  out: tuple[int, ...]
  pads: tuple[tuple[int, int], ...]
  fill: str
  precision: object
  accum: object
  forward: str  # "im2col" | "shifted" | "products" | "hybrid" | "winograd"
  input_grad: str  # "conv" (of the cotangent, see `by_conv`) | "reshape" | "col2im" | "col2im_in_place" | "taps"
  kernel_grad: str  # "patches" | "products" (shifted cotangents) | "taps" | "winograd"
  chunk: int  # examples per chunk of the forward pass
  grad_chunk: int  # examples per chunk of the backward pass (both gradients) and the kernel gradient
  input_grad_chunk: int  # examples per chunk of the input gradient as an op of its own (conv_transpose)
  by_conv: "Plan | None" = None  # for input_grad == "conv": the forward convolution of the cotangent
  tile: int = 0  # for "winograd": outputs per tile and axis, F(tile, 3)


def accumulation_dtype(dtype):
  """float32 for 16-bit floats (as `preferred_element_type=float32` does), else the dtype itself."""
  dtype = jnp.dtype(dtype)
  return jnp.dtype(jnp.float32) if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4 else dtype


def winograd_tile(spec: ConvSpec, dtype):
  """Outputs per tile and axis of a Winograd forward: F(4, 3) in 1-D and 2-D (float32 error about
  10x the direct sum's, 3e-6 of the largest output, tests/ops/test_winograd.py), F(2, 3) in 3-D
  (F(4, 3)'s error grows to 3e-5 there) and for 16-bit floats."""
  return 4 if len(spec.window) <= 2 and jnp.dtype(dtype).itemsize >= 4 else 2


def choose_forward(spec: ConvSpec, channels, dtype):
  """The forward algorithm: the caller's, or the one measured fastest for this shape.

  Grouped and single-channel convolutions multiply per tap ("shifted"; with one channel each
  tap is an outer product and all fuse into one loop: LeNet-5 trained 1.25x faster than with
  im2col for its first layer); strided ones build the patch matrix ("im2col"). Stride-1
  convolutions of 2 or more spatial axes gather the patches of the leading axes and multiply
  them by every tap of the last axis in one GEMM ("hybrid": 1.1-2.5x im2col on rows 1, 2, 5 and
  12 of experiments/bench_conv.py, about equal on 3 and 4), unless the last axis is short or
  the GEMM shallow (`HYBRID_FROM_LENGTH`, `HYBRID_FROM_DEPTH`: LeNet-5's 14x14x6 layer trained
  faster with im2col, though alone it ran faster); 1-D ones over a large example
  (`C * P >= PRODUCTS_FROM_ELEMENTS`) multiply the input by every tap ("products", which
  "hybrid" is in 1-D). Both multiply every position of the last axis: where the output covers
  less than half of it (a 5x5 VALID kernel on a 5x5 input) im2col is faster.
  """
  if spec.algorithm is not None:
    return spec.algorithm
  window, padded, out = spec.window, spec.padded, spec.out
  if spec.groups > 1 or channels == 1:
    return "shifted"
  if spec.backend != "cpu" and len(window) >= 2:  # on an H100 the fastest forward on 2-D and 3-D rows, or within 5%
    return "hybrid"
  if (
    spec.backend == "cpu"
    and winograd.applies(window, spec.strides, spec.dilation, spec.groups)
    and channels >= WINOGRAD_FROM_CHANNELS
    and jnp.dtype(dtype).itemsize >= 4
    and math.prod(out) >= WINOGRAD_FROM_OUTPUTS
  ):
    return "winograd"
  if any(s > 1 for s in spec.strides) or padded[-1] > 2 * out[-1]:
    return "im2col"
  if len(window) >= 2:
    large = padded[-1] >= HYBRID_FROM_LENGTH and math.prod(window[:-1]) * channels >= HYBRID_FROM_DEPTH
    return "hybrid" if large else "im2col"
  return "products" if math.prod(padded) * channels >= PRODUCTS_FROM_ELEMENTS else "im2col"


def phase_spec(spec: ConvSpec, channels, dtype) -> ConvSpec | None:
  """For a stride-1 dilated convolution of 2 or more spatial axes whose undilated convolution over
  one phase of the input (`funconv.ops.phases`) would run Winograd's algorithm on `spec.backend`: that
  phase's `ConvSpec` (each padded axis `P` rounded up to a multiple of its dilation `D` and split
  into `P / D` elements, no padding, no dilation). Otherwise None.

  Decided, like every other choice, when the primitives are lowered, for the backend lowered for
  (`funconv.ops.primitives`: all three passes of the dilated convolution, and their tangents and
  transposes, then lower to the undilated primitives on the phases). Measured on 2 cores
  (`experiments/bench_conv.py` row 10, 64x32x32x32, 3x3 dilated by 2): 1.54x native
  forward+backward and 1.12x forward, against
  0.77x and 1.25x dilated in the run before (alone, interleaved: 27.8 ms against 35.5 dilated and
  45.1 native; forward 11.7, 12.7, 13.9). By phases into hybrid (16 channels) or in 1-D it ran
  0.7-1.2x the dilated convolution: not chosen there.
  """
  if spec.algorithm is not None or len(spec.window) < 2:
    return None
  if any(s != 1 for s in spec.strides) or all(d == 1 for d in spec.dilation):
    return None
  rank = len(spec.window)
  in_spatial = tuple(-(-p // d) for p, d in zip(spec.padded, spec.dilation))
  phase = spec._replace(in_spatial=in_spatial, dilation=(1,) * rank, pads=((0, 0),) * rank, fill="constant")
  return phase if choose_forward(phase, channels, dtype) == "winograd" else None


def _input_grad_algorithm(spec: ConvSpec, chosen, channels):
  """For stride 1 with "products"/"hybrid" (the shapes they are chosen for) and `C >= 8` channels,
  `dx` as a forward convolution of the cotangent measured 1.1-1.3x faster than col2im's scattered
  adds (rows 2, 3, 11 of experiments/bench_conv.py); with a single channel it is a matrix-vector
  product, 1.5x slower. One GEMM for all taps, then col2im, for ungrouped convolutions (added
  tap by tap in place below `COL2IM_IN_PLACE_BELOW_CHANNELS` channels at stride 1; a reshape
  when the window covers the input); per-tap products for grouped and "shifted" ones."""
  stride_1 = all(s == 1 for s in spec.strides)
  wide = channels >= INPUT_GRAD_BY_CONV_FROM_CHANNELS
  if chosen == "winograd" or stride_1 and chosen in ("products", "hybrid") and wide:
    return "conv"
  if spec.groups == 1 and (chosen != "shifted" or channels == 1):
    if tuple(spec.window) == spec.padded and all(d == 1 for d in spec.dilation):
      return "reshape"
    return "col2im_in_place" if stride_1 and channels < COL2IM_IN_PLACE_BELOW_CHANNELS else "col2im"
  return "taps"


def _kernel_grad_algorithm(spec: ConvSpec, chosen, channels):
  """Shifted cotangents (one GEMM of the gathered leading axes against the cotangent shifted by each
  tap of the last axis) for "hybrid" and single-channel inputs at stride 1 along the last axis:
  fewer slices than the patch matrix, which halved LeNet-5's first layer's compile time; the patch
  matrix for im2col and strided single-channel inputs (per-tap GEMMs would contract to one column
  each); otherwise one GEMM per tap."""
  if chosen == "winograd":
    return "winograd"
  single = spec.groups == 1 and channels == 1
  if spec.groups == 1 and (chosen == "hybrid" or single) and spec.strides[-1] == 1:
    return "products"
  return "patches" if (spec.groups == 1 and chosen == "im2col") or single else "taps"


def _chunk_size(n, per_example_bytes):
  """The largest divisor of the batch `n` whose intermediates fit in `CHUNK_BYTES`."""
  target = max(1, CHUNK_BYTES // max(per_example_bytes, 1))
  return max((d for d in range(1, min(n, target) + 1) if n % d == 0), default=1)


def _intermediate_bytes(spec, chosen, input_grad, channels, c_out, itemsize, tile, backward=False):
  """Bytes per example of the largest intermediates of the forward (or backward) pass.

  The patch matrix (or the products, or the per-tap slices) for most; for "hybrid" the patches
  of the leading axes plus the last axis's products, several times smaller, except in a
  backward pass that falls back to col2im and the patch matrix.
  """
  window, out = spec.window, spec.out
  if chosen == "winograd":  # the transformed input and products, `(a / m)^d` times the output positions
    transformed = math.prod(winograd.tiles(out, tile)) * (tile + winograd.TAPS - 1) ** len(window)
    return transformed * (channels + c_out) * itemsize
  if chosen == "hybrid" and (not backward or input_grad == "conv"):
    positions = math.prod(out[:-1]) * spec.padded[-1]
    return positions * (math.prod(window[:-1]) * channels + window[-1] * c_out) * itemsize
  return math.prod(out) * math.prod(window) * max(channels, c_out) * itemsize


def _by_conv_plan(spec: ConvSpec, plan: Plan):
  """For a stride-1 `plan`: the convolution of the cotangent with the flipped kernel giving `dx`.

  The cotangent is padded by the dilated window's reach `r` less the forward's pads, so the
  output is the unpadded input's cotangent. Edge-filled pads (wrap, reflect) also send cotangent
  from the pad to the input: then the whole padded grid is computed (pad `r` each side) and
  unpadded afterwards.
  """
  reach = window_reach(spec.window, spec.dilation)
  if spec.fill == "constant":
    pads, out = tuple((r - lo, r - hi) for r, (lo, hi) in zip(reach, spec.pads)), spec.in_spatial
  else:
    pads, out = tuple((r, r) for r in reach), plan.padded
  padded = tuple(o + lo + hi for o, (lo, hi) in zip(plan.out, pads))
  return plan._replace(
    padded=padded, out=tuple(out), pads=pads, fill="constant", input_grad="col2im", kernel_grad="taps"
  )


def make_plan(spec: ConvSpec, n: int, channels: int, c_out: int, dtype) -> Plan:
  """The plan of a convolution of `(n, *spec.in_spatial, channels)` to `c_out` channels in `dtype`."""
  chosen = choose_forward(spec, channels, dtype)
  forward = chosen if spec.groups == 1 else "shifted"
  input_grad = _input_grad_algorithm(spec, chosen, channels)
  accum = accumulation_dtype(dtype)
  tile = winograd_tile(spec, dtype) if chosen == "winograd" else 0
  plan = Plan(
    spec.strides,
    spec.dilation,
    spec.groups,
    spec.padded,
    spec.out,
    spec.pads,
    spec.fill,
    spec.precision,
    accum,
    forward,
    input_grad,
    _kernel_grad_algorithm(spec, chosen, channels),
    n,
    n,
    n,
    tile=tile,
  )
  if input_grad == "conv":
    plan = plan._replace(by_conv=_by_conv_plan(spec, plan))
  # Depthwise convolutions build no patch matrix and fuse into a few loops that a scan would only
  # break up (measured 10x slower chunked): one chunk. Accelerators keep their working sets in
  # their own memory and run a scan's steps one after another: one chunk.
  if spec.groups == channels > 1 or spec.backend != "cpu":
    return plan
  sizes = (spec, chosen, input_grad, channels, c_out, accum.itemsize, tile)
  # The input gradient alone (a transposed convolution and its backward pass) holds the
  # per-tap parts of col2im, `K * C` per output position (measured on rows 13-15).
  col2im_parts = math.prod(spec.out) * math.prod(spec.window) * channels * accum.itemsize
  return plan._replace(
    chunk=_chunk_size(n, _intermediate_bytes(*sizes)),
    grad_chunk=_chunk_size(n, _intermediate_bytes(*sizes, backward=True)),
    input_grad_chunk=_chunk_size(n, col2im_parts),
  )
