"""Convolution from lax primitives: strided slices, pads and `dot_general`, never a native conv.

Three chunk kernels carry all of it. For a padded input `xp` `(n, *P, C)`, a kernel `w`
`(*K, C // groups, C_out)` and a cotangent `g` `(n, *O, C_out)`:

- `_forward`: `y = sum_k tap_k(xp) @ w[k]`, as one GEMM on the patch matrix (im2col) or one GEMM
  per kernel tap (shifted);
- `_input_grad`: the col2im transpose, `dxp = sum_k spread_k(g @ w[k]^T)`, spreading with
  interior padding;
- `_kernel_grad`: `dw[k] = tap_k(xp)^T g`.

`conv` is `_forward` with a `custom_vjp` whose backward is `_input_grad` and `_kernel_grad`;
`conv_transpose` is `_input_grad` with a `custom_vjp` whose backward is `_forward` and
`_kernel_grad`. Every kernel runs over the batch in chunks (`lax.scan`) so that the patch
matrix of one chunk stays in cache; see docs/convolution.md for the measurements behind the
choices.
"""
import functools
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


def _patches(taps):
  """The im2col matrix `(rows, K * C)`: tap-major columns, matching `w.reshape(-1, C_out)`."""
  return _rows(jnp.concatenate(taps, axis=-1))


def _use_patches(geo, w):
  return geo.algorithm == "im2col" and geo.groups == 1


def _forward(xp, w, geo: Geometry):
  """`(n, *P, C)` padded input, `(*K, C // groups, C_out)` kernel -> `(n, *O, C_out)`."""
  window, c_out = w.shape[:-2], w.shape[-1]
  if geo.algorithm in ("products", "hybrid") and geo.groups == 1:
    return _forward_products(xp, w, geo, gathered=len(window) - 1 if geo.algorithm == "hybrid" else 0)
  taps = _taps(xp, window, geo)
  if _use_patches(geo, w):
    y = _matmul(_patches(taps), w.reshape(-1, c_out), geo)
  else:
    w_taps = w.reshape(-1, *w.shape[-2:])
    y = sum(_tap_product(_rows(t), w_taps[i], geo) for i, t in enumerate(taps))
  return y.reshape(xp.shape[0], *geo.out, c_out)


def _forward_products(xp, w, geo: Geometry, gathered):
  """The forward pass as wide GEMMs whose products are slid into place.

  The taps of the first `gathered` spatial axes are gathered into a patch matrix, as im2col does
  (over the full extent of the other axes); that matrix (`xp` itself when `gathered == 0`, a free
  reshape) is multiplied by every remaining tap in one GEMM, and each remaining tap's block of
  columns is sliced into place and summed: slices and adds that fuse into one loop.
  """
  window, channels, c_out = w.shape[:-2], w.shape[-2], w.shape[-1]
  rank = len(window)
  lead, rest = window[:gathered], window[gathered:]
  full = tuple(xp.shape[1 + gathered:-1])
  slices = [strided_window_slice(xp, (*(k * d for k, d in zip(tap, geo.dilation)), *(0,) * (rank - gathered)),
                                 (*geo.out[:gathered], *full),
                                 (*geo.strides[:gathered], *(1,) * (rank - gathered)))
            for tap in window_offsets(lead)]
  gathered_x = slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)
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
  if _use_patches(geo, w):
    d_patches = _matmul(g2, w.reshape(-1, w.shape[-1]), geo, ((1,), (1,)))
    parts = [d_patches[:, i * channels:(i + 1) * channels] for i in range(len(w_taps))]
  else:
    parts = [_tap_input_grad(g2, w_taps[i], geo) for i in range(len(w_taps))]
  return _col2im([part.reshape(n, *geo.out, channels) for part in parts], window, geo)


def _kernel_grad(xp, g, window, geo: Geometry):
  """`dw[k] = tap_k(xp)^T g`: `(n, *P, C)`, `(n, *O, C_out)` -> `(*K, C // groups, C_out)`.

  One GEMM on the patch matrix for im2col and for single-channel inputs (where per-tap GEMMs
  would contract to a single column each), otherwise one per tap.
  """
  taps = _taps(xp, window, geo)
  g2 = _rows(g)
  if geo.groups == 1 and (geo.algorithm == "im2col" or xp.shape[-1] == 1):
    dw = _matmul(_patches(taps), g2, geo, ((0,), (0,)))
  else:
    dw = jnp.stack([_tap_kernel_grad(_rows(t), g2, geo) for t in taps])
  return dw.reshape(*window, -1, g.shape[-1])


def _over_chunks(fn, chunk, *arrays):
  """`fn` on consecutive `chunk`-example slices of `arrays` (scanned, so one chunk is live at a time).

  `fn` returns `(per_example, total)`: `per_example` pieces are joined back along the batch axis,
  `total` pieces are summed over chunks.
  """
  n = arrays[0].shape[0]
  if chunk >= n:
    return fn(*arrays)
  stacked = [a.reshape(n // chunk, chunk, *a.shape[1:]) for a in arrays]
  _, total_shape = jax.eval_shape(fn, *(s[0] for s in stacked))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), total_shape)

  def body(total, chunk_arrays):
    per_example, part = fn(*chunk_arrays)
    return jax.tree.map(jnp.add, total, part), per_example

  total, per_example = lax.scan(body, zeros, stacked)
  return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), per_example), total


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_padded(xp, w, geo: Geometry):
  return _over_chunks(lambda x: (_forward(x, w, geo), ()), geo.chunk, xp)[0]


def _conv_padded_fwd(xp, w, geo):
  return _conv_padded(xp, w, geo), (xp, w)


def _conv_padded_bwd(geo, residuals, g):
  xp, w = residuals
  window = w.shape[:-2]
  return _over_chunks(lambda x, gc: (_input_grad(gc, w, geo), _kernel_grad(x, gc, window, geo)),
                      geo.chunk, xp, g)


_conv_padded.defvjp(_conv_padded_fwd, _conv_padded_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_transposed_padded(x, w, geo: Geometry):
  """`_input_grad` as an operation: `x` `(n, *O, C_out)` -> `(n, *P, C)` with `geo` of the conv."""
  return _over_chunks(lambda c: (_input_grad(c, w, geo), ()), geo.chunk, x)[0]


def _conv_transposed_padded_fwd(x, w, geo):
  return _conv_transposed_padded(x, w, geo), (x, w)


def _conv_transposed_padded_bwd(geo, residuals, g):
  x, w = residuals
  window = w.shape[:-2]
  return _over_chunks(lambda gc, xc: (_forward(gc, w, geo), _kernel_grad(gc, xc, window, geo)),
                      geo.chunk, g, x)


_conv_transposed_padded.defvjp(_conv_transposed_padded_fwd, _conv_transposed_padded_bwd)


def _chunk_size(n, out, window, channels, itemsize, depthwise=False):
  """The largest divisor of the batch `n` whose patch matrix fits in `CHUNK_BYTES`.

  Depthwise convolutions build no patch matrix and fuse into a few loops that a scan would only
  break up (measured 10x slower chunked): one chunk.
  """
  if depthwise:
    return n
  per_example = math.prod(out) * math.prod(window) * channels * itemsize
  target = max(1, CHUNK_BYTES // max(per_example, 1))
  return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def _choose_algorithm(algorithm, x_shape, groups, strides, pairs, op):
  """The forward algorithm: the caller's, or the one measured fastest for this shape.

  Grouped convolutions multiply per tap ("shifted"). Otherwise the patch matrix ("im2col"),
  except for stride-1 convolutions over a large example (`C * prod(P) >= PRODUCTS_FROM_ELEMENTS`),
  where one wide GEMM of every position with every tap ("products") measured faster (rows 5,
  10 and 11 of experiments/bench_conv.py; slower on rows 2, 3 and 4), and in 3-D patches over
  the leading axes times the last axis's taps ("hybrid": 2x "products" on row 12).
  """
  if algorithm is None:
    padded = math.prod(n + lo + hi for n, (lo, hi) in zip(x_shape[1:-1], pairs))
    if groups > 1:
      return "shifted"
    if all(s == 1 for s in strides) and padded * x_shape[-1] >= PRODUCTS_FROM_ELEMENTS:
      return "hybrid" if len(strides) >= 3 else "products"
    return "im2col"
  if algorithm not in ALGORITHMS:
    raise ValueError(f"{op}: unknown algorithm {algorithm!r}; expected None or one of {ALGORITHMS}")
  return algorithm


def _check_kernel(x, w, rank, op):
  check_float(x, op, "x")
  check_float(w, op, "w")
  if w.ndim != rank + 2:
    raise ValueError(f"{op}: kernel w must have shape (*window, C_in // groups, C_out) with a "
                     f"{rank}-D window, got w.shape={w.shape}")


def _geometry(x_shape, w_shape, strides, dilation, groups, pairs, algorithm, itemsize, precision, op):
  """The `Geometry` of a conv of `x` `(n, *spatial, C)` with `w`, after padding by `pairs`."""
  window, c_out = w_shape[:-2], w_shape[-1]
  padded = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[1:-1], pairs))
  out = tuple(conv_output_size(p, k, s, (0, 0), d) for p, k, s, d in zip(padded, window, strides, dilation))
  if any(o < 1 for o in out):
    raise ValueError(f"{op}: the window {tuple(window)} with dilation {tuple(dilation)} is larger than the "
                     f"padded input {padded} (input spatial shape {x_shape[1:-1]}, padding {pairs})")
  channels = x_shape[-1]
  chunk = _chunk_size(x_shape[0], out, window, max(channels, c_out), itemsize, depthwise=groups == channels)
  return Geometry(strides, dilation, groups, padded, out, algorithm, chunk, precision)


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
    algorithm: `None` (chosen by shape), `"im2col"` (one GEMM on the patch matrix) or
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
  rank = jnp.ndim(w) - 2
  if rank < 1:
    raise ValueError(f"{op}: kernel w must have shape (*window, C_in // groups, C_out), got {jnp.shape(w)}")
  _check_kernel(x, w, rank, op)
  dtype = jnp.result_type(x, w)
  x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
  x3, batch = flatten_batch(x, rank, op)
  window, channels, c_out = w.shape[:rank], x.shape[-1], w.shape[-1]
  if not isinstance(groups, int) or groups < 1:
    raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
  if channels % groups or c_out % groups or channels // groups != w.shape[-2]:
    raise ValueError(f"{op}: with groups={groups}, x's {channels} input channels (x.shape={x.shape}) must "
                     f"equal groups * w.shape[-2] and C_out={c_out} must divide by groups (w.shape={w.shape})")
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  in_spatial = x3.shape[1:-1]
  pairs, fill = resolve_padding(padding, in_spatial, window, strides, dilation, op)
  geo = _geometry(x3.shape, w.shape, strides, dilation, groups, pairs,
                  _choose_algorithm(algorithm, x3.shape, groups, strides, pairs, op), dtype.itemsize, precision, op)
  y = _conv_padded(pad_spatial(x3, pairs, fill), w, geo)
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
  rank = jnp.ndim(w) - 2
  if rank < 1:
    raise ValueError(f"{op}: kernel w must have shape (*window, C_in, C_out), got {jnp.shape(w)}")
  _check_kernel(x, w, rank, op)
  dtype = jnp.result_type(x, w)
  x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
  x3, batch = flatten_batch(x, rank, op)
  window = w.shape[:rank]
  if x.shape[-1] != w.shape[-2]:
    raise ValueError(f"{op}: x has {x.shape[-1]} channels (x.shape={x.shape}) but the kernel expects "
                     f"w.shape[-2]={w.shape[-2]} (w.shape={w.shape})")
  strides = as_tuple(strides, rank, "strides", op)
  dilation = as_tuple(dilation, rank, "dilation", op)
  pairs = transpose_padding(window, strides, dilation, padding, op)
  in_spatial = x3.shape[1:-1]
  reach = [dilate_size(k, d) - 1 for k, d in zip(window, dilation)]
  out = tuple(s * (n - 1) + 1 + lo + hi - r for s, n, (lo, hi), r in zip(strides, in_spatial, pairs, reach))
  if any(o < 1 for o in out):
    raise ValueError(f"{op}: padding {pairs} leaves no output for input shape {x.shape}, window {window}, "
                     f"strides {strides}, dilation {dilation}")
  # The conv whose input gradient this is: kernel flipped, its channel axes swapped.
  w_conv = jnp.flip(w, axis=tuple(range(rank))).swapaxes(-1, -2)
  padded = tuple(s * (n - 1) + 1 + r for s, n, r in zip(strides, in_spatial, reach))
  geo = Geometry(strides, dilation, 1, padded, tuple(in_spatial),
                 _choose_algorithm(algorithm, (x3.shape[0], *padded, w.shape[-1]), 1, strides, [(0, 0)] * rank, op),
                 _chunk_size(x3.shape[0], in_spatial, window, w.shape[-1], dtype.itemsize), precision)
  y = _conv_transposed_padded(x3, w_conv, geo)
  y = pad_spatial(y, [(lo - r, hi - r) for (lo, hi), r in zip(pairs, reach)])
  return y.reshape(*batch, *y.shape[1:])
