"""Convolution from lax primitives: strided slices, pads and `dot_general`, never a native conv.

Three chunk kernels carry all of it. For a padded input `xp` `(n, *P, C)`, a kernel `w`
`(*K, C // groups, C_out)` and a cotangent `g` `(n, *O, C_out)`:

- `_forward`: `y = sum_k tap_k(xp) @ w[k]`, as one GEMM on the patch matrix (im2col), one wide
  GEMM of every position with every tap slid into place (products, hybrid), or one GEMM per
  kernel tap (shifted);
- `_input_grad`: the col2im transpose, `dxp = sum_k spread_k(g @ w[k]^T)`, spreading by output
  phase; for stride 1 the input gradient is instead `_forward` of `g` with the flipped kernel;
- `_kernel_grad`: `dw[k] = tap_k(xp)^T g`.

`conv` is `_forward` with a `custom_vjp` whose backward is the input and kernel gradients;
`conv_transpose` is `_input_grad` with a `custom_vjp` whose backward is `_forward` and
`_kernel_grad`. Every kernel runs over the batch in chunks (`lax.scan`), padding each chunk
itself, so that one chunk's intermediates stay in cache; see docs/convolution.md for the
measurements behind the choices.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from funconv.ops.padding import pad_spatial, resolve_padding
from funconv.ops.windows import (as_tuple, check_float, conv_output_size, dilate_size, flatten_batch,
                                 strided_window_slice, window_offsets)

ALGORITHMS = ("im2col", "shifted", "products", "hybrid")
# Patch-matrix bytes of one batch chunk: about twice a core's L2 cache was fastest when measured
# (experiments/bench_conv.py; docs/convolution.md).
CHUNK_BYTES = 1 << 22
# Input elements per example (padded positions times channels) from which a stride-1 forward
# computes all tap products in one GEMM rather than building the patch matrix (measured).
PRODUCTS_FROM_ELEMENTS = 1 << 15
# A stride-1 convolution of 2+ spatial axes uses "hybrid" from this padded length of its last axis
# and this GEMM depth (gathered taps times channels); below, im2col (LeNet-5's 14x14x6; measured).
HYBRID_FROM_LENGTH = 24
HYBRID_FROM_DEPTH = 8
# Input channels below which a stride-1 col2im adds tap by tap in place (measured).
COL2IM_IN_PLACE_BELOW_CHANNELS = 8
# Input channels from which the im2col patch matrix is filled tap by tap in a loop (measured).
PATCHES_IN_PLACE_FROM_CHANNELS = 16
# Input channels from which a stride-1 input gradient is a convolution of the cotangent (measured).
INPUT_GRAD_BY_CONV_FROM_CHANNELS = 8


class Geometry(NamedTuple):
  """Static description of a convolution on a padded input: everything but the arrays."""
  strides: tuple[int, ...]
  dilation: tuple[int, ...]
  groups: int
  padded: tuple[int, ...]    # spatial shape of the padded input, P
  out: tuple[int, ...]       # spatial shape of the output, O
  algorithm: str
  chunk: int                 # examples per chunk; divides the batch
  precision: lax.Precision | None = None
  pads: tuple[tuple[int, int], ...] | None = None   # (low, high) per spatial axis, applied per chunk
  fill: str = "constant"
  grad_chunk: int | None = None  # examples per chunk of conv's backward pass (set by `_geometry`)


def _pad(x, geo: Geometry):
  """Pad one chunk: inside the chunk the pad fuses into the slices that read it."""
  return x if geo.pads is None else pad_spatial(x, geo.pads, geo.fill)


def _unpad(dxp, geo: Geometry):
  """Transpose of `_pad`: the cotangent of the unpadded chunk (wrapped and mirrored pads add back)."""
  if geo.pads is None:
    return dxp
  spatial = tuple(p - lo - hi for p, (lo, hi) in zip(dxp.shape[1:-1], geo.pads))
  shape = jax.ShapeDtypeStruct((dxp.shape[0], *spatial, dxp.shape[-1]), dxp.dtype)
  return jax.linear_transpose(lambda x: pad_spatial(x, geo.pads, geo.fill), shape)(dxp)[0]


def _taps(xp, window, geo: Geometry):
  """The strided slice of `xp` under every kernel tap, each `(n, *O, C)`, in HWIO order."""
  return _taps_of_each([xp] * len(window_offsets(window)), window, geo)


def _taps_of_each(arrays, window, geo: Geometry):
  """Tap `k`'s strided slice of the `k`-th array."""
  return [strided_window_slice(a, tuple(k * d for k, d in zip(tap, geo.dilation)), geo.out, geo.strides)
          for a, tap in zip(arrays, window_offsets(window))]


def _col2im(parts, window, geo: Geometry):
  """Transpose of `_taps`: add each tap's `(n, *O, C)` part back onto the padded grid `(n, *P, C)`.

  Tap `k` lands on positions `D k + S o`. Position `S q + r` (phase `r < S`) gets the taps with
  `D k = r (mod S)`, shifted by `floor(D k / S)`: per phase a sum of unstrided shifts, then the
  phases are interleaved. No zeros are spread between elements (interior padding, a slow
  fusion on CPU), and no work is done for them.
  """
  n, channels = parts[0].shape[0], parts[0].shape[-1]
  phase_shape = tuple(-(-p // s) for p, s in zip(geo.padded, geo.strides))   # Q = ceil(P / S)
  phases = {}
  for part, tap in zip(parts, window_offsets(window)):
    starts = [k * d for k, d in zip(tap, geo.dilation)]
    phase = tuple(b % s for b, s in zip(starts, geo.strides))
    shifts = [b // s for b, s in zip(starts, geo.strides)]
    placed = pad_spatial(part, [(b, q - b - o) for b, q, o in zip(shifts, phase_shape, geo.out)])
    phases[phase] = phases[phase] + placed if phase in phases else placed
  if all(s == 1 for s in geo.strides):
    grid = phases[(0,) * len(window)]
  else:
    zeros = jnp.zeros((n, *phase_shape, channels), parts[0].dtype)
    stacked = jnp.stack([phases.get(r, zeros) for r in window_offsets(geo.strides)])
    stacked = stacked.reshape(*geo.strides, n, *phase_shape, channels)
    rank = len(window)
    # (S1, .., Sd, n, Q1, .., Qd, C) -> (n, Q1, S1, .., Qd, Sd, C): phase r of q is position S q + r.
    order = (rank, *(a for i in range(rank) for a in (rank + 1 + i, i)), 2 * rank + 1)
    grid = stacked.transpose(order).reshape(n, *(q * s for q, s in zip(phase_shape, geo.strides)), channels)
  return lax.slice(grid, (0,) * grid.ndim, (n, *geo.padded, channels))


def _tap_starts(window, geo: Geometry):
  """`start(i)`: the `(N, *spatial)` start index of tap `i`'s slice (row-major taps), for a traced
  loop index `i`."""
  inner = [math.prod(window[a + 1:]) for a in range(len(window))]

  def start(i):
    return (0, *(lax.rem(lax.div(i, m), k) * d for m, k, d in zip(inner, window, geo.dilation)))

  return start


def _col2im_in_place(parts, window, geo: Geometry):
  """Stride-1 `_col2im` of `parts` `(n, *O, K, C)`: each tap's part added onto its window of the
  grid in place, one tap per step of a loop.

  With few channels `_col2im`'s pads and adds fuse into one loop that tests, element by element,
  which taps reach it, and does not vectorise; here each step adds contiguous rows (2x faster
  on LeNet-5's 14x14x6 layer), and the loop body is compiled once for all taps.
  """
  n, channels = parts.shape[0], parts.shape[-1]
  start = _tap_starts(window, geo)

  def add_tap(i, grid):
    part = lax.dynamic_index_in_dim(parts, i, axis=-2, keepdims=False)
    at = (*start(i), 0)
    return lax.dynamic_update_slice(grid, lax.dynamic_slice(grid, at, part.shape) + part, at)

  return lax.fori_loop(0, parts.shape[-2], add_tap, jnp.zeros((n, *geo.padded, channels), parts.dtype))


def _rows(a):
  return a.reshape(-1, a.shape[-1])


def _matmul(a, b, geo, contract=((1,), (0,))):
  return lax.dot_general(a, b, (contract, ((), ())), precision=geo.precision)


def _tap_product(t, wk, geo):
  """`t @ wk` per group: `t` `(rows, C)`, `wk` `(C // groups, C_out)` -> `(rows, C_out)`."""
  rows, channels = t.shape
  groups, c_out = geo.groups, wk.shape[-1]
  if groups == 1 and channels == 1:  # an outer product: a multiply that fuses with the other taps
    return t * wk
  if groups == 1:
    return _matmul(t, wk, geo)
  if wk.shape[0] == 1:  # depthwise: a multiply per channel, no GEMM
    return (t[:, :, None] * wk.reshape(groups, c_out // groups)).reshape(rows, c_out)
  y = jnp.einsum("rgc,cgm->rgm", t.reshape(rows, groups, -1), wk.reshape(-1, groups, c_out // groups),
                 precision=geo.precision)
  return y.reshape(rows, c_out)


def _tap_input_grad(g, wk, geo):
  """Transpose of `_tap_product` in `t`: `g` `(rows, C_out)` -> `(rows, C)`."""
  rows, c_out = g.shape
  groups = geo.groups
  if groups == 1:
    return _matmul(g, wk, geo, ((1,), (1,)))
  g = g.reshape(rows, groups, c_out // groups)
  wk = wk.reshape(-1, groups, c_out // groups)
  if wk.shape[0] == 1:
    return jnp.sum(g * wk[0], axis=-1)
  return jnp.einsum("rgm,cgm->rgc", g, wk, precision=geo.precision).reshape(rows, -1)


def _tap_kernel_grad(t, g, geo):
  """Transpose of `_tap_product` in `wk`: `t` `(rows, C)`, `g` `(rows, C_out)` -> `(C // groups, C_out)`."""
  rows, channels = t.shape
  groups, c_out = geo.groups, g.shape[-1]
  if groups == 1:
    return _matmul(t, g, geo, ((0,), (0,)))
  g = g.reshape(rows, groups, c_out // groups)
  if channels == groups:
    return jnp.sum(t[:, :, None] * g, axis=0).reshape(1, c_out)
  dw = jnp.einsum("rgc,rgm->cgm", t.reshape(rows, groups, -1), g, precision=geo.precision)
  return dw.reshape(-1, c_out)


def _patches(xp, window, geo: Geometry):
  """The im2col matrix `(rows, K * C)`: tap-major columns, matching `w.reshape(-1, C_out)`.

  From `PATCHES_IN_PLACE_FROM_CHANNELS` channels it is filled in place, one tap's strided slice
  per step of a loop: as fast as a concatenate of the K slices, which XLA compiles to K + 1
  kernels (2-2.5x the compile time of a whole layer's forward and backward on ResNet-20's
  16x16x32 and 8x8x64 layers). With fewer channels each step would write rows too narrow to
  be fast (LeNet-5's 14x14x6 layer 10% slower, a 3-channel input 25%). A window that covers
  the whole padded input (one output position, as in LeNet-5's last convolution) makes the
  patch matrix a free reshape of `xp`.
  """
  n, channels = xp.shape[0], xp.shape[-1]
  if _covers_input(window, geo):
    return xp.reshape(n, -1)
  if channels < PATCHES_IN_PLACE_FROM_CHANNELS:
    return _rows(jnp.concatenate(_taps(xp, window, geo), axis=-1))
  start, taps, rank = _tap_starts(window, geo), math.prod(window), len(window)
  reach = tuple(s * (o - 1) + 1 for s, o in zip(geo.strides, geo.out))

  def put_tap(i, patches):
    tap = lax.dynamic_slice(xp, (*start(i), 0), (n, *reach, channels))
    if any(s > 1 for s in geo.strides):
      tap = lax.slice(tap, (0,) * tap.ndim, tap.shape, (1, *geo.strides, 1))
    return lax.dynamic_update_slice(patches, tap[..., None, :], (0,) * (rank + 1) + (i, 0))

  patches = lax.fori_loop(0, taps, put_tap, jnp.zeros((n, *geo.out, taps, channels), xp.dtype))
  return patches.reshape(-1, taps * channels)


def _covers_input(window, geo: Geometry):
  return tuple(window) == geo.padded and all(d == 1 for d in geo.dilation)


def _use_patches(geo):
  """Whether the forward and the kernel gradient go through the patch matrix (im2col)."""
  return geo.groups == 1 and geo.algorithm == "im2col"


def _forward(xp, w, geo: Geometry):
  """`(n, *P, C)` padded input, `(*K, C // groups, C_out)` kernel -> `(n, *O, C_out)`."""
  window, c_out = w.shape[:-2], w.shape[-1]
  if geo.algorithm in ("products", "hybrid") and geo.groups == 1:
    return _forward_products(xp, w, geo)
  if _use_patches(geo):
    y = _matmul(_patches(xp, window, geo), w.reshape(-1, c_out), geo)
  else:
    taps = _taps(xp, window, geo)
    w_taps = w.reshape(-1, *w.shape[-2:])
    y = sum(_tap_product(_rows(t), w_taps[i], geo) for i, t in enumerate(taps))
  return y.reshape(xp.shape[0], *geo.out, c_out)


def _gather_leading(xp, window, geo: Geometry, gathered):
  """The patch matrix of the first `gathered` spatial axes, over the full extent of the others.

  `(n, *P, C)` -> `(n, *O[:gathered], *P[gathered:], prod(window[:gathered]) * C)`; `xp` itself
  when `gathered == 0`.
  """
  rank = len(window)
  full = tuple(xp.shape[1 + gathered:-1])
  slices = [strided_window_slice(xp, (*(k * d for k, d in zip(tap, geo.dilation)), *(0,) * (rank - gathered)),
                                 (*geo.out[:gathered], *full),
                                 (*geo.strides[:gathered], *(1,) * (rank - gathered)))
            for tap in window_offsets(window[:gathered])]
  return slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)


def _gathered_axes(geo: Geometry, rank):
  """How many leading axes "hybrid" gathers into patches (all but the last); "products" none."""
  return rank - 1 if geo.algorithm == "hybrid" else 0


def _forward_products(xp, w, geo: Geometry):
  """The forward pass as one wide GEMM whose products are slid into place.

  The taps of the gathered axes (`_gathered_axes`) form a patch matrix, as im2col does, over the
  full extent of the other axes; that matrix (`xp` itself, a free reshape, when none are
  gathered) is multiplied by every remaining tap in one GEMM, and each remaining tap's block of
  columns is sliced into place and summed: slices and adds that fuse into one loop.
  """
  window, channels, c_out = w.shape[:-2], w.shape[-2], w.shape[-1]
  gathered = _gathered_axes(geo, len(window))
  lead, rest = window[:gathered], window[gathered:]
  gathered_x = _gather_leading(xp, window, geo, gathered)
  n_lead, n_rest = math.prod(lead), math.prod(rest)
  w_wide = w.reshape(n_lead, n_rest, channels, c_out).transpose(0, 2, 1, 3).reshape(n_lead * channels, -1)
  products = _matmul(_rows(gathered_x), w_wide, geo).reshape(*gathered_x.shape[:-1], n_rest * c_out)
  rest_geo = geo._replace(strides=(1,) * gathered + geo.strides[gathered:],
                          dilation=(0,) * gathered + geo.dilation[gathered:])
  blocks = (lax.slice_in_dim(products, i * c_out, (i + 1) * c_out, axis=-1) for i in range(n_rest))
  return sum(_taps_of_each(blocks, (1,) * gathered + rest, rest_geo))


def _input_grad(g, w, geo: Geometry):
  """col2im: `(n, *O, C_out)` cotangent -> `(n, *P, C)` cotangent of the padded input."""
  window = w.shape[:-2]
  n, channels = g.shape[0], w.shape[-2] * geo.groups
  g2 = _rows(g)
  w_taps = w.reshape(-1, *w.shape[-2:])
  if geo.groups == 1 and (geo.algorithm != "shifted" or channels == 1):  # one GEMM for all taps
    d_patches = _matmul(g2, w.reshape(-1, w.shape[-1]), geo, ((1,), (1,)))
    if _covers_input(window, geo):
      return d_patches.reshape(n, *geo.padded, channels)
    if all(s == 1 for s in geo.strides) and channels < COL2IM_IN_PLACE_BELOW_CHANNELS:
      return _col2im_in_place(d_patches.reshape(n, *geo.out, len(w_taps), channels), window, geo)
    parts = [d_patches[:, i * channels:(i + 1) * channels] for i in range(len(w_taps))]
  else:
    parts = [_tap_input_grad(g2, w_taps[i], geo) for i in range(len(w_taps))]
  return _col2im([part.reshape(n, *geo.out, channels) for part in parts], window, geo)


def _flipped_kernel(w, groups):
  """The kernel of the convolution that transposes `w`'s: taps reversed, `C` and `C_out` swapped per group.

  `(*K, C // groups, C_out)` -> `(*K, C_out // groups, C)`.
  """
  window, c_group, c_out = w.shape[:-2], w.shape[-2], w.shape[-1]
  w = jnp.flip(w, axis=tuple(range(len(window))))
  rank = len(window)
  w = w.reshape(*window, c_group, groups, c_out // groups).transpose(*range(rank), rank + 2, rank + 1, rank)
  return w.reshape(*window, c_out // groups, groups * c_group)


def _input_grad_geometry(geo: Geometry, window, in_spatial):
  """For a stride-1 `geo`: the convolution of the cotangent with `_flipped_kernel` giving `dx`.

  The cotangent is padded by the dilated window's reach `r` less the forward's pads, so the
  output is the unpadded input's cotangent, `(n, *in_spatial, C)`. Edge-filled pads (wrap,
  reflect) also send cotangent from the pad to the input: then the whole padded grid is computed
  (pad `r` each side) and `_unpad` adds it back.
  """
  reach = [dilate_size(k, d) - 1 for k, d in zip(window, geo.dilation)]
  if geo.fill == "constant":
    pads, out = tuple((r - lo, r - hi) for r, (lo, hi) in zip(reach, geo.pads)), tuple(in_spatial)
  else:
    pads, out = tuple((r, r) for r in reach), geo.padded
  padded = tuple(o + lo + hi for o, (lo, hi) in zip(geo.out, pads))
  return geo._replace(padded=padded, out=out, pads=pads, fill="constant")


def _kernel_grad(xp, g, window, geo: Geometry):
  """`dw[k] = tap_k(xp)^T g`: `(n, *P, C)`, `(n, *O, C_out)` -> `(*K, C // groups, C_out)`.

  One GEMM of the gathered leading axes against the cotangent shifted by each tap of the last
  axis for "hybrid" and single-channel inputs (stride 1 along the last axis: fewer slices than
  the patch matrix, which halved LeNet-5's first layer's compile time); one GEMM on the patch
  matrix for im2col (and strided single-channel inputs, where per-tap GEMMs would contract to
  one column each); otherwise one GEMM per tap.
  """
  g2 = _rows(g)
  single = geo.groups == 1 and xp.shape[-1] == 1
  if geo.groups == 1 and (geo.algorithm == "hybrid" or single) and geo.strides[-1] == 1:
    return _kernel_grad_products(xp, g, window, geo)
  if _use_patches(geo) or single:
    dw = _matmul(_patches(xp, window, geo), g2, geo, ((0,), (0,)))
  else:
    dw = jnp.stack([_tap_kernel_grad(_rows(t), g2, geo) for t in _taps(xp, window, geo)])
  return dw.reshape(*window, -1, g.shape[-1])


def _kernel_grad_products(xp, g, window, geo: Geometry):
  """`_kernel_grad` for "hybrid" (stride 1 along the last axis), the transpose of `_forward_products`.

  The last axis's taps shift the cotangent instead of the input: `dw[.., k] = gathered^T
  shift_k(g)`, with the shifts side by side as the columns of one GEMM.
  """
  rank = len(window)
  gathered = _gather_leading(xp, window, geo, rank - 1)
  full, out, dilation, taps = xp.shape[-2], geo.out[-1], geo.dilation[-1], window[-1]
  shifted = [pad_spatial(g, [(0, 0)] * (rank - 1) + [(k * dilation, full - out - k * dilation)]) for k in range(taps)]
  dw = _matmul(_rows(gathered), _rows(jnp.concatenate(shifted, axis=-1)), geo, ((0,), (0,)))
  return jnp.moveaxis(dw.reshape(*window[:-1], xp.shape[-1], taps, g.shape[-1]), -2, rank - 1)


def _over_chunks(fn, chunk, arrays, zeros=()):
  """`fn` on consecutive `chunk`-example slices of `arrays` (scanned, so one chunk is live at a time).

  `fn` returns `(per_example, part)`: `per_example` pieces are joined back along the batch axis,
  `part`s are summed over chunks, starting from `zeros` (of their shape and dtype).
  """
  n = arrays[0].shape[0]
  if chunk >= n:
    return fn(*arrays)
  stacked = [a.reshape(n // chunk, chunk, *a.shape[1:]) for a in arrays]

  def body(total, chunk_arrays):
    per_example, part = fn(*chunk_arrays)
    return jax.tree.map(jnp.add, total, part), per_example

  total, per_example = lax.scan(body, zeros, stacked)
  return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), per_example), total


def _conv_chunks(x, w, geo: Geometry):
  """`x` `(n, *spatial, C)`, padded by `geo.pads` chunk by chunk -> `(n, *O, C_out)`."""
  return _over_chunks(lambda xc: (_forward(_pad(xc, geo), w, geo), ()), geo.chunk, (x,))[0]


_conv = jax.custom_vjp(_conv_chunks, nondiff_argnums=(2,))


def _conv_fwd(x, w, geo):
  return _conv_chunks(x, w, geo), (x, w)


def _input_grad_by_conv(geo: Geometry, channels):
  """Whether `dx` is computed as a forward convolution of the cotangent rather than by col2im.

  For stride 1 with "products"/"hybrid" (the shapes they are chosen for) and `C >= 8` output
  channels it measured 1.1-1.3x faster than col2im's scattered adds (rows 2, 3, 11 of
  experiments/bench_conv.py); with a single channel it is a matrix-vector product, 1.5x slower.
  """
  return (all(s == 1 for s in geo.strides) and geo.algorithm in ("products", "hybrid")
          and channels >= INPUT_GRAD_BY_CONV_FROM_CHANNELS)


def _conv_bwd(geo, residuals, g):
  x, w = residuals
  window = w.shape[:-2]
  if _input_grad_by_conv(geo, x.shape[-1]):
    geo_t, w_t = _input_grad_geometry(geo, window, x.shape[1:-1]), _flipped_kernel(w, geo.groups)

    def input_grad(gc):
      dx = _forward(_pad(gc, geo_t), w_t, geo_t)
      return dx if geo.fill == "constant" else _unpad(dx, geo)
  else:
    def input_grad(gc):
      return _unpad(_input_grad(gc, w, geo), geo)

  return _over_chunks(lambda xc, gc: (input_grad(gc), _kernel_grad(_pad(xc, geo), gc, window, geo)),
                      geo.grad_chunk, (x, g), jnp.zeros_like(w))


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_transposed_chunks(x, w, geo: Geometry):
  """`_input_grad` as an operation: `x` `(n, *O, C_out)` -> `(n, *P, C)` with `geo` of the conv."""
  return _over_chunks(lambda c: (_input_grad(c, w, geo), ()), geo.chunk, (x,))[0]


_conv_transposed_padded = jax.custom_vjp(_conv_transposed_chunks, nondiff_argnums=(2,))


def _conv_transposed_padded_fwd(x, w, geo):
  return _conv_transposed_chunks(x, w, geo), (x, w)


def _conv_transposed_padded_bwd(geo, residuals, g):
  x, w = residuals
  window = w.shape[:-2]
  return _over_chunks(lambda gc, xc: (_forward(gc, w, geo), _kernel_grad(gc, xc, window, geo)),
                      geo.chunk, (g, x), jnp.zeros_like(w))


_conv_transposed_padded.defvjp(_conv_transposed_padded_fwd, _conv_transposed_padded_bwd)


def _chunk_size(n, per_example_bytes):
  """The largest divisor of the batch `n` whose intermediates fit in `CHUNK_BYTES`."""
  target = max(1, CHUNK_BYTES // max(per_example_bytes, 1))
  return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def _intermediate_bytes(geo: Geometry, window, channels, c_out, itemsize, backward=False):
  """Bytes per example of the largest intermediates of `geo`'s forward (or backward) pass.

  The patch matrix (or the products, or the per-tap slices) for most; for "hybrid" the patches
  of the leading axes plus the last axis's products, several times smaller, except in a
  backward pass that falls back to col2im and the patch matrix (`_input_grad_by_conv`).
  """
  if geo.algorithm == "hybrid" and (not backward or _input_grad_by_conv(geo, channels)):
    rows = math.prod(geo.out[:-1]) * geo.padded[-1]
    return rows * (math.prod(window[:-1]) * channels + window[-1] * c_out) * itemsize
  return math.prod(geo.out) * math.prod(window) * max(channels, c_out) * itemsize


def _choose_algorithm(algorithm, padded, out, window, channels, groups, strides, op):
  """The forward algorithm: the caller's, or the one measured fastest for this shape.

  `padded` and `out` are the spatial shapes of the padded input and of the output.

  Grouped and single-channel convolutions multiply per tap ("shifted"; with one channel each
  tap is an outer product and all fuse into one loop: LeNet-5 trained 1.25x faster than with
  im2col for its first layer); strided ones build the patch matrix ("im2col"). Stride-1
  convolutions of 2 or more spatial axes gather the patches of the leading axes and multiply
  them by every tap of the last axis in one GEMM ("hybrid": 1.1-2.5x im2col on rows 1, 2, 5 and
  12 of experiments/bench_conv.py, about equal on 3 and 4), unless the last axis is short or
  the GEMM shallow (`HYBRID_FROM_LENGTH`, `HYBRID_FROM_DEPTH`: LeNet-5's 14x14x6 layer trained
  faster with im2col, though alone it ran faster); 1-D ones over a large example
  (`C * P >= PRODUCTS_FROM_ELEMENTS`) multiply the input by every tap ("products", which
  "hybrid" is in 1-D). Both multiply every position of the last axis: where
  the output covers less than half of it (a 5x5 VALID kernel on a 5x5 input) im2col is faster.
  """
  if algorithm is None:
    if groups > 1 or channels == 1:
      return "shifted"
    # Products along the last axis cover all of it: no more than 2x the output's extent.
    if any(s > 1 for s in strides) or padded[-1] > 2 * out[-1]:
      return "im2col"
    if len(window) >= 2:
      large = padded[-1] >= HYBRID_FROM_LENGTH and math.prod(window[:-1]) * channels >= HYBRID_FROM_DEPTH
      return "hybrid" if large else "im2col"
    return "products" if math.prod(padded) * channels >= PRODUCTS_FROM_ELEMENTS else "im2col"
  if algorithm not in ALGORITHMS:
    raise ValueError(f"{op}: unknown algorithm {algorithm!r}; expected None or one of {ALGORITHMS}")
  return algorithm


def _operands(x, w, op, kernel_shape):
  """Checked operands in their common dtype: `(x3, batch, w, rank)`, `x3` with one batch axis.

  The spatial rank is the kernel's: `w` has shape `kernel_shape`, `(*window, ..., ...)`.
  """
  rank = jnp.ndim(w) - 2
  if rank < 1:
    raise ValueError(f"{op}: kernel w must have shape {kernel_shape}, got {jnp.shape(w)}")
  check_float(x, op, "x")
  check_float(w, op, "w")
  dtype = jnp.result_type(x, w)
  x3, batch = flatten_batch(jnp.asarray(x, dtype), rank, op)
  return x3, batch, jnp.asarray(w, dtype), rank


def _geometry(x_shape, w_shape, strides, dilation, groups, pairs, fill, algorithm, itemsize, precision, op):
  """The `Geometry` of a conv of `x` `(n, *spatial, C)` with `w`, padding by `pairs` filled as `fill`."""
  window, c_out = w_shape[:-2], w_shape[-1]
  padded = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[1:-1], pairs))
  out = tuple(conv_output_size(p, k, s, (0, 0), d) for p, k, s, d in zip(padded, window, strides, dilation))
  if any(o < 1 for o in out):
    raise ValueError(f"{op}: the window {tuple(window)} with dilation {tuple(dilation)} is larger than the "
                     f"padded input {padded} (input spatial shape {x_shape[1:-1]}, padding {pairs})")
  n, channels = x_shape[0], x_shape[-1]
  algorithm = _choose_algorithm(algorithm, padded, out, window, channels, groups, strides, op)
  geo = Geometry(strides, dilation, groups, padded, out, algorithm, n, precision, tuple(pairs), fill, n)
  # Depthwise convolutions build no patch matrix and fuse into a few loops that a scan would only
  # break up (measured 10x slower chunked): one chunk.
  if groups == channels > 1:
    return geo
  shapes = (geo, window, channels, c_out, itemsize)
  return geo._replace(chunk=_chunk_size(n, _intermediate_bytes(*shapes)),
                      grad_chunk=_chunk_size(n, _intermediate_bytes(*shapes, backward=True)))


def conv(x, w, strides=None, padding="VALID", dilation=None, groups: int = 1, *, algorithm=None,
         precision=None):
  """N-d convolution (cross-correlation, as in deep learning) of channels-last `x` with kernel `w`.

  Args:
    x: `(*batch, *spatial, C_in)`, any number (0 included) of leading batch axes; floating dtype.
    w: `(*window, C_in // groups, C_out)` ("HWIO"); the window's rank (1, 2 or 3, or more) is
      the number of spatial axes.
    strides: int or one int per spatial axis (default 1).
    padding: `"VALID"`, `"SAME"`, `"SAME_LOWER"`, `"CAUSAL"` (1-D), `"CIRCULAR"`, `"REFLECT"`, an
      int, or one `(low, high)` pair per spatial axis (see `funconv.ops.resolve_padding`).
    dilation: kernel dilation, int or one per spatial axis (default 1).
    groups: feature groups; `C_in` and `C_out` must both divide by it. `groups == C_in` is a
      depthwise convolution (with channel multiplier `C_out // C_in`).
    algorithm: `None` (chosen by shape, see docs/convolution.md), `"im2col"` (one GEMM on the
      patch matrix), `"products"` (one GEMM of every position with every tap, slid into
      place), `"hybrid"` (im2col over the leading spatial axes, products over the last) or
      `"shifted"` (one GEMM per kernel tap). Results agree to float rounding.
    precision: passed to every `lax.dot_general`.

  Returns:
    `(*batch, *out_spatial, C_out)`, with `out = floor((W + lo + hi - D (K - 1) - 1) / S) + 1`.
    Equal, to float rounding, to `lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=
    dilation, feature_group_count=groups, dimension_numbers=("NHWC", "HWIO", "NHWC"))`.

  Example:
    >>> x = jnp.ones((8, 28, 28, 1)); w = jnp.ones((3, 3, 1, 16))
    >>> conv(x, w, padding="SAME").shape
    (8, 28, 28, 16)
  """
  op = "conv"
  x3, batch, w, rank = _operands(x, w, op, "(*window, C_in // groups, C_out)")
  window, channels, c_out = w.shape[:rank], x3.shape[-1], w.shape[-1]
  if not isinstance(groups, int) or groups < 1:
    raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
  if channels % groups or c_out % groups or channels // groups != w.shape[-2]:
    raise ValueError(f"{op}: with groups={groups}, x's {channels} input channels (x.shape={jnp.shape(x)}) must "
                     f"equal groups * w.shape[-2] and C_out={c_out} must divide by groups (w.shape={w.shape})")
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  in_spatial = x3.shape[1:-1]
  pairs, fill = resolve_padding(padding, in_spatial, window, strides, dilation, op)
  geo = _geometry(x3.shape, w.shape, strides, dilation, groups, pairs, fill, algorithm, w.dtype.itemsize, precision, op)
  y = _conv(x3, w, geo)
  return y.reshape(*batch, *y.shape[1:])


def transpose_padding(window, strides, dilation, padding, op="conv_transpose"):
  """`lax.conv_transpose`'s padding of the spread input, one `(low, high)` pair per spatial axis.

  `"SAME"` and `"VALID"` name the padding of the forward convolution this one transposes, so
  `"SAME"` gives output size `W * S`, `"VALID"` gives `W * S + max(K' - S, 0)`; an int or pairs
  pad the spread input directly.
  """
  rank = len(window)
  if isinstance(padding, str) and padding.upper() in ("SAME", "VALID"):
    pairs = []
    for k, s, d in zip(window, strides, dilation):
      k = dilate_size(k, d)
      if padding.upper() == "SAME":
        total = k + s - 2
        low = k - 1 if s > k - 1 else math.ceil(total / 2)
      else:
        total, low = k + s - 2 + max(k - s, 0), k - 1
      pairs.append((low, total - low))
    return tuple(pairs)
  if isinstance(padding, str):
    raise ValueError(f"{op}: padding must be 'SAME', 'VALID', an int or {rank} (low, high) pairs, got {padding!r}")
  pairs, _ = resolve_padding(padding, (1,) * rank, window, strides, dilation, op)
  return pairs


def conv_transpose(x, w, strides=None, padding="VALID", dilation=None, *, algorithm=None, precision=None):
  """Transposed ("fractionally strided") convolution: a decoder's upsampling layer.

  Agrees with `lax.conv_transpose(x, w, strides, padding, rhs_dilation=dilation,
  dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=False)`: `x` spread with
  `S - 1` zeros between elements, padded, then correlated with `w`. Computed without the
  spreading: each input element's product with each kernel tap is added in place (col2im).

  Args:
    x: `(*batch, *spatial, C_in)`, floating.
    w: `(*window, C_in, C_out)`.
    strides: the upsampling factor, int or one per spatial axis.
    padding: `"SAME"` (output `W * S`), `"VALID"` (output `W * S + max(K' - S, 0)`), an int or one
      `(low, high)` pair per axis padding the spread input (`lax.conv_transpose` conventions).
    dilation: kernel dilation.

  Returns:
    `(*batch, *out_spatial, C_out)` with `out = S (W - 1) + 1 + lo + hi - D (K - 1)`.

  Example:
    >>> conv_transpose(jnp.ones((2, 16, 16, 8)), jnp.ones((4, 4, 8, 3)), strides=2, padding="SAME").shape
    (2, 32, 32, 3)
  """
  op = "conv_transpose"
  x3, batch, w, rank = _operands(x, w, op, "(*window, C_in, C_out)")
  window = w.shape[:rank]
  if x3.shape[-1] != w.shape[-2]:
    raise ValueError(f"{op}: x has {x3.shape[-1]} channels (x.shape={jnp.shape(x)}) but the kernel expects "
                     f"w.shape[-2]={w.shape[-2]} (w.shape={w.shape})")
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  pairs = transpose_padding(window, strides, dilation, padding, op)
  in_spatial = x3.shape[1:-1]
  reach = [dilate_size(k, d) - 1 for k, d in zip(window, dilation)]
  out = tuple(s * (n - 1) + 1 + lo + hi - r for s, n, (lo, hi), r in zip(strides, in_spatial, pairs, reach))
  if any(o < 1 for o in out):
    raise ValueError(f"{op}: padding {pairs} leaves no output for input shape {jnp.shape(x)}, window {window}, "
                     f"strides {strides}, dilation {dilation}")
  w_conv = _flipped_kernel(w, 1)   # the kernel of the conv whose input gradient this is
  padded = tuple(s * (n - 1) + 1 + r for s, n, r in zip(strides, in_spatial, reach))
  geo = Geometry(strides, dilation, 1, padded, tuple(in_spatial),
                 _choose_algorithm(algorithm, padded, tuple(in_spatial), window, w.shape[-1], 1, strides, op),
                 _chunk_size(x3.shape[0], math.prod(in_spatial) * math.prod(window) * w.shape[-1] * w.dtype.itemsize),
                 precision)
  y = _conv_transposed_padded(x3, w_conv, geo)
  y = pad_spatial(y, [(lo - r, hi - r) for (lo, hi), r in zip(pairs, reach)])
  return y.reshape(*batch, *y.shape[1:])
