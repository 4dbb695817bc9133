"""The three kernels of a convolution and their chunked drivers, each reading its part of the `Plan`.

For a padded input `xp` `(n, *P, C)`, a kernel `w` `(*K, C // groups, C_out)` and a cotangent `g`
`(n, *O, C_out)`:

- `forward`: `y = sum_k tap_k(xp) @ w[k]`, as one GEMM on the patch matrix ("im2col"), one wide
  GEMM of every position with every tap slid into place ("products", "hybrid"), or one GEMM per
  kernel tap ("shifted");
- `input_grad`: the transpose in `xp`, `dxp = sum_k spread_k(g @ w[k]^T)` (col2im), or for
  stride 1 `forward` of `g` with the flipped kernel ("conv");
- `kernel_grad`: the transpose in `w`, `dw[k] = tap_k(xp)^T g`.

`conv`, `input_grad_of_conv` and `kernel_grad_of_conv` (and each one's tangent and pair of
transposes) run them over the batch in chunks (`lax.scan`), padding each chunk itself so that one
chunk's intermediates stay in cache; they are the lowerings of the primitives in
`funconv.ops.primitives`.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax

from funconv.ops import gather, scatter, winograd
from funconv.ops.gemm import matmul, tap_input_grad, tap_kernel_grad, tap_product
from funconv.ops.padding import pad_spatial, unpad_spatial
from funconv.ops.plan import ConvSpec, Plan, make_plan


def forward(xp, w, plan: Plan):
  """`(n, *P, C)` padded input, `(*K, C // groups, C_out)` kernel -> `(n, *O, C_out)` in `plan.accum`."""
  window, c_out = w.shape[:-2], w.shape[-1]
  if plan.forward == "winograd":
    return winograd.forward(xp, w, plan)
  if plan.forward in ("products", "hybrid"):
    return _forward_products(xp, w, plan)
  if plan.forward == "im2col":
    y = matmul(gather.patches(xp, window, plan), w.reshape(-1, c_out), plan)
  else:
    w_taps = w.reshape(-1, *w.shape[-2:])
    y = sum(tap_product(gather.rows(t), w_taps[i], plan) for i, t in enumerate(gather.taps(xp, window, plan)))
  return y.reshape(xp.shape[0], *plan.out, c_out)


def _forward_products(xp, w, plan: Plan):
  """The forward pass as one wide GEMM whose products are slid into place.

  "hybrid" gathers the taps of all spatial axes but the last into a patch matrix, as im2col
  does, over the full extent of the last axis ("products" gathers none: the matrix is `xp`, a
  free reshape); that matrix is multiplied by every tap of the last axis in one GEMM, and each
  tap's block of columns is sliced into place and summed: slices and adds that fuse into one loop.
  """
  window, channels, c_out = w.shape[:-2], w.shape[-2], w.shape[-1]
  gathered = len(window) - 1 if plan.forward == "hybrid" else 0
  lead, rest = window[:gathered], window[gathered:]
  gathered_x = gather.gather_leading(xp, window, plan, gathered)
  n_lead, n_rest = math.prod(lead), math.prod(rest)
  w_wide = w.reshape(n_lead, n_rest, channels, c_out).transpose(0, 2, 1, 3).reshape(n_lead * channels, -1)
  products = matmul(gather.rows(gathered_x), w_wide, plan).reshape(*gathered_x.shape[:-1], n_rest * c_out)
  rest_plan = plan._replace(
    strides=(1,) * gathered + plan.strides[gathered:], dilation=(0,) * gathered + plan.dilation[gathered:]
  )
  blocks = (lax.slice_in_dim(products, i * c_out, (i + 1) * c_out, axis=-1) for i in range(n_rest))
  return sum(gather.taps_of_each(blocks, (1,) * gathered + rest, rest_plan))


def input_grad(g, w, plan: Plan):
  """`(n, *O, C_out)` cotangent -> `(n, *P, C)` cotangent of the padded input (col2im family)."""
  window = w.shape[:-2]
  n, channels, c_out = g.shape[0], w.shape[-2] * plan.groups, w.shape[-1]
  g2 = gather.rows(g)
  if plan.input_grad == "taps":
    w_taps = w.reshape(-1, *w.shape[-2:])
    parts = [tap_input_grad(g2, w_taps[i], plan) for i in range(len(w_taps))]
    return scatter.col2im([part.reshape(n, *plan.out, channels) for part in parts], window, plan)
  d_patches = matmul(g2, w.reshape(-1, c_out), plan, ((1,), (1,)))  # one GEMM for all taps
  if plan.input_grad == "reshape":
    return d_patches.reshape(n, *plan.padded, channels)
  if plan.input_grad == "col2im_in_place":
    return scatter.col2im_in_place(d_patches.reshape(n, *plan.out, -1, channels), window, plan)
  parts = [
    d_patches[:, i * channels : (i + 1) * channels].reshape(n, *plan.out, channels) for i in range(math.prod(window))
  ]
  return scatter.col2im(parts, window, plan)


def flipped_kernel(w, groups):
  """The kernel of the convolution that transposes `w`'s: taps reversed, `C` and `C_out` swapped per group.

  `(*K, C // groups, C_out)` -> `(*K, C_out // groups, C)`.
  """
  window, c_group, c_out = w.shape[:-2], w.shape[-2], w.shape[-1]
  w = jnp.flip(w, axis=tuple(range(len(window))))
  rank = len(window)
  w = w.reshape(*window, c_group, groups, c_out // groups).transpose(*range(rank), rank + 2, rank + 1, rank)
  return w.reshape(*window, c_out // groups, groups * c_group)


def kernel_grad(xp, g, window, plan: Plan):
  """`dw[k] = tap_k(xp)^T g`: `(n, *P, C)`, `(n, *O, C_out)` -> `(*K, C // groups, C_out)`."""
  if plan.kernel_grad == "products":
    return _kernel_grad_products(xp, g, window, plan)
  if plan.kernel_grad == "winograd":
    return winograd.kernel_grad(xp, g, plan)
  g2 = gather.rows(g)
  if plan.kernel_grad == "patches":
    dw = matmul(gather.patches(xp, window, plan), g2, plan, ((0,), (0,)))
  else:
    dw = jnp.stack([tap_kernel_grad(gather.rows(t), g2, plan) for t in gather.taps(xp, window, plan)])
  return dw.reshape(*window, -1, g.shape[-1])


def _kernel_grad_products(xp, g, window, plan: Plan):
  """`kernel_grad` at stride 1 along the last axis, the transpose of "hybrid"'s forward.

  The last axis's taps shift the cotangent instead of the input: `dw[.., k] = gathered^T
  shift_k(g)`, with the shifts side by side as the columns of one GEMM.
  """
  rank = len(window)
  gathered = gather.gather_leading(xp, window, plan, rank - 1)
  full, out, dilation, taps = xp.shape[-2], plan.out[-1], plan.dilation[-1], window[-1]
  shifted = [pad_spatial(g, [(0, 0)] * (rank - 1) + [(k * dilation, full - out - k * dilation)]) for k in range(taps)]
  dw = matmul(gather.rows(gathered), gather.rows(jnp.concatenate(shifted, axis=-1)), plan, ((0,), (0,)))
  return jnp.moveaxis(dw.reshape(*window[:-1], xp.shape[-1], taps, g.shape[-1]), -2, rank - 1)


def varying_over(arrays):
  """The manual mesh axes (under `shard_map`) that any of `arrays` varies over: a frozenset, empty elsewhere."""
  return frozenset().union(*(jax.typeof(a).mat.varying for a in arrays))


def vary(a, axes):
  """`a` cast to vary over the manual mesh axes `axes` too (`lax.pcast`); `a` itself where it already does."""
  missing = tuple(axes - jax.typeof(a).mat.varying)
  return lax.pcast(a, missing, to="varying") if missing else a


def over_chunks(fn, chunk, arrays, zeros=()):
  """`fn` on consecutive `chunk`-example slices of `arrays` (scanned, so one chunk is live at a time).

  `fn` returns `(per_example, part)`: `per_example` pieces are joined back along the batch axis,
  `part`s are summed over chunks, starting from `zeros` (of their shape and dtype).
  """
  n = arrays[0].shape[0]
  if chunk >= n:
    return fn(*arrays)
  # Under shard_map a sum of per-device chunks varies over the devices the arrays vary over, and
  # scan's carry must keep one type: the zeros start varying as the sum comes out.
  axes = varying_over(arrays)
  zeros = jax.tree.map(lambda z: vary(z, axes), zeros)
  stacked = [a.reshape(n // chunk, chunk, *a.shape[1:]) for a in arrays]

  def body(total, chunk_arrays):
    per_example, part = fn(*chunk_arrays)
    return jax.tree.map(jnp.add, total, part), per_example

  total, per_example = lax.scan(body, zeros, stacked)
  return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), per_example), total


def _pad(x, plan: Plan):
  """Pad one chunk: inside the chunk the pad fuses into the slices that read it."""
  return pad_spatial(x, plan.pads, plan.fill)


class _Chunked:
  """The three passes of one convolution (input `(n, *in_spatial, channels)`, output channels
  `c_out`) on one chunk of examples, under `make_plan`'s plan."""

  def __init__(self, spec: ConvSpec, n, channels, c_out, dtype):
    self.spec, self.channels, self.c_out = spec, channels, c_out
    self.plan = make_plan(spec, n, channels, c_out, dtype)

  def conv(self, xc, w):
    """`(c, *in_spatial, C)` -> `(c, *O, C_out)`."""
    return forward(_pad(xc, self.plan), w, self.plan)

  def input_grad_kernel(self, w):
    """What `input_grad` multiplies by: `w`, or flipped when `dx` is a convolution of the cotangent
    (made once per call, outside the chunk loop)."""
    return flipped_kernel(w, self.plan.groups) if self.plan.input_grad == "conv" else w

  def input_grad(self, gc, w_in):
    """`(c, *O, C_out)` -> `(c, *in_spatial, C)`; `w_in` from `input_grad_kernel`."""
    plan = self.plan
    if plan.input_grad == "conv":
      dx = forward(_pad(gc, plan.by_conv), w_in, plan.by_conv)
      return dx if plan.fill == "constant" else unpad_spatial(dx, plan.pads, plan.fill)
    return unpad_spatial(input_grad(gc, w_in, plan), plan.pads, plan.fill)

  def kernel_grad(self, xc, gc):
    """`(c, *in_spatial, C)`, `(c, *O, C_out)` -> `(*window, C // groups, C_out)`."""
    return kernel_grad(_pad(xc, self.plan), gc, self.spec.window, self.plan)

  def kernel_zeros(self):
    """The kernel gradient's sum over chunks starts here."""
    return jnp.zeros((*self.spec.window, self.channels // self.spec.groups, self.c_out), self.plan.accum)


# The lowerings of the primitives, each returning the dtype of the operand its result stands for
# (accumulated results come back from float32). Each bilinear pass `B(a, b)` also runs as its
# tangent `B(ta, b) + B(a, tb)` and its two transposes `(A(ct, b), B'(a, ct))` in one scan over the
# batch: a backward pass reads each chunk of the input and the cotangent once for both gradients
# (row 3 of experiments/bench_conv.py: 1.3x faster than two scans).


def _of_conv(x, w_or_g, spec):
  """The passes of a convolution of input `x` whose other operand (kernel or cotangent) ends in `C_out`."""
  return _Chunked(spec, x.shape[0], x.shape[-1], w_or_g.shape[-1], x.dtype)


def _of_input_grad(g, w, spec):
  """The passes of the convolution whose input gradient takes cotangent `g` and kernel `w`."""
  return _Chunked(spec, g.shape[0], w.shape[-2] * spec.groups, w.shape[-1], g.dtype)


def conv(x, w, spec: ConvSpec):
  """`x` `(n, *in_spatial, C)`, `w` -> `(n, *O, C_out)`."""
  k = _of_conv(x, w, spec)
  return over_chunks(lambda xc: (k.conv(xc, w), ()), k.plan.chunk, (x,))[0].astype(x.dtype)


def conv_tangent(x, w, tx, tw, spec: ConvSpec):
  """`conv(tx, w) + conv(x, tw)`."""
  k = _of_conv(x, w, spec)
  y = over_chunks(lambda xc, txc: (k.conv(txc, w) + k.conv(xc, tw), ()), k.plan.chunk, (x, tx))[0]
  return y.astype(x.dtype)


def conv_cotangents(x, w, g, spec: ConvSpec):
  """`conv`'s transposes for cotangent `g`: `(input_grad(g, w), kernel_grad(x, g))`, in one scan."""
  k = _of_conv(x, w, spec)
  w_in = k.input_grad_kernel(w)
  dx, dw = over_chunks(
    lambda xc, gc: (k.input_grad(gc, w_in), k.kernel_grad(xc, gc)), k.plan.grad_chunk, (x, g), k.kernel_zeros()
  )
  return [dx.astype(x.dtype), dw.astype(w.dtype)]


def input_grad_of_conv(g, w, spec: ConvSpec):
  """The transpose of `conv` in `x`: cotangent `(n, *O, C_out)` -> `(n, *in_spatial, C)`."""
  k = _of_input_grad(g, w, spec)
  w_in = k.input_grad_kernel(w)
  return over_chunks(lambda gc: (k.input_grad(gc, w_in), ()), k.plan.input_grad_chunk, (g,))[0].astype(g.dtype)


def input_grad_tangent(g, w, tg, tw, spec: ConvSpec):
  """`input_grad(tg, w) + input_grad(g, tw)`."""
  k = _of_input_grad(g, w, spec)
  w_in, tw_in = k.input_grad_kernel(w), k.input_grad_kernel(tw)
  dx = over_chunks(
    lambda gc, tgc: (k.input_grad(tgc, w_in) + k.input_grad(gc, tw_in), ()), k.plan.input_grad_chunk, (g, tg)
  )[0]
  return dx.astype(g.dtype)


def input_grad_cotangents(g, w, ct, spec: ConvSpec):
  """`input_grad`'s transposes for cotangent `ct` `(n, *in_spatial, C)`: `(conv(ct, w), kernel_grad(ct, g))`."""
  k = _of_input_grad(g, w, spec)
  dg, dw = over_chunks(
    lambda gc, cc: (k.conv(cc, w), k.kernel_grad(cc, gc)), k.plan.input_grad_chunk, (g, ct), k.kernel_zeros()
  )
  return [dg.astype(g.dtype), dw.astype(w.dtype)]


def kernel_grad_of_conv(x, g, spec: ConvSpec):
  """The transpose of `conv` in `w`: input `(n, *in_spatial, C)`, cotangent `(n, *O, C_out)` ->
  `(*window, C // groups, C_out)`."""
  k = _of_conv(x, g, spec)
  dw = over_chunks(lambda xc, gc: ((), k.kernel_grad(xc, gc)), k.plan.grad_chunk, (x, g), k.kernel_zeros())[1]
  return dw.astype(x.dtype)


def kernel_grad_tangent(x, g, tx, tg, spec: ConvSpec):
  """`kernel_grad(tx, g) + kernel_grad(x, tg)`."""
  k = _of_conv(x, g, spec)
  dw = over_chunks(
    lambda xc, gc, txc, tgc: ((), k.kernel_grad(txc, gc) + k.kernel_grad(xc, tgc)),
    k.plan.grad_chunk,
    (x, g, tx, tg),
    k.kernel_zeros(),
  )[1]
  return dw.astype(x.dtype)


def kernel_grad_cotangents(x, g, ct, spec: ConvSpec):
  """`kernel_grad`'s transposes for a kernel cotangent `ct`: `(input_grad(g, ct), conv(x, ct))`."""
  k = _of_conv(x, g, spec)
  ct_in = k.input_grad_kernel(ct)
  dx, dg = over_chunks(lambda xc, gc: ((k.input_grad(gc, ct_in), k.conv(xc, ct)), ()), k.plan.grad_chunk, (x, g))[0]
  return [dx.astype(x.dtype), dg.astype(g.dtype)]
