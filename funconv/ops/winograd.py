"""Winograd's minimal filtering (Lavin and Gray 2015) for stride-1 convolutions with 3-tap windows.

`F(m, 3)` computes `m` outputs of a 3-tap correlation from an `a = m + 2` input tile with `a`
multiplies instead of `3 m`: `y = A^T [(G w) * (B^T x)]`. Nested over the spatial axes, a tile of
`m^d` outputs costs `a^d` products, and over channels each product is a GEMM: the input tiles
transformed by `B^T` (`V`, `(a^d, tiles, C)`), the kernel by `G` (`U`, `(a^d, C, C_out)`), one
batched GEMM `V @ U` (`a^d` GEMMs over channels), and the products transformed back by `A^T`.
`F(2, 3)` needs 16 products per 4 outputs in 2-D (2.25x fewer than 36), `F(4, 3)` 36 per 16 (4x).

The transforms are sums of a few strided slices with constant weights (most are 0 or 1), which
XLA fuses into one loop per transform. Both gradients are Winograd too: the input gradient is a
stride-1 convolution of the cotangent with the flipped kernel (the plan's `by_conv`), and the
kernel gradient is the transpose of the forward in `U`: `dU = V^T dM` with the cotangent tiles
transformed by `A` (`dM`), then `dw = G^T dU G`.

Every function takes a padded input `xp` `(n, *P, C)` (output `O = P - 2` per axis) or a
cotangent `(n, *O, C_out)`, and the `Plan` of its convolution (`plan.tile` is `m`).
"""

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from funconv.ops.gemm import batched_matmul
from funconv.ops.padding import pad_spatial

# Interpolation points 0, 1, -1 (and 2, -2) and infinity: the transforms of Lavin and Gray's paper.
TRANSFORMS = {
  2: dict(
    BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G=[[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    AT=[[1, 1, 1, 0], [0, 1, -1, -1]],
  ),
  4: dict(
    BT=[
      [4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1],
    ],
    G=[
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ],
    AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
  ),
}
TAPS = 3


def applies(window, strides, dilation, groups):
  """Whether Winograd computes this convolution: every axis a 3-tap window, stride 1, no dilation."""
  return (
    groups == 1 and all(k == TAPS for k in window) and all(s == 1 for s in strides) and all(d == 1 for d in dilation)
  )


def tiles(out, m):
  """Tiles per spatial axis covering the output `out` (the last one padded)."""
  return tuple(-(-o // m) for o in out)


def _combine(weights, pieces):
  """`sum_i weights[i] * pieces[i]`, skipping zero weights and multiplying by none of +-1."""
  terms = [p if c == 1 else -p if c == -1 else p * c for c, p in zip(weights, pieces) if c]
  return sum(terms[1:], terms[0])


def _tile_transform(x, matrix, m, counts):
  """Each spatial axis of `x` `(n, *S, C)` cut into `counts` tiles of `matrix`'s row length, `m`
  apart, and each tile multiplied by `matrix` `(a, length)`: `(a^d, n, *counts, C)`, the
  transform index row-major over the axes. One axis at a time, each a stack of `a` sums of
  slices, which XLA fuses into one loop (all axes at once it left as `a^d` loops and a copy)."""
  length = len(matrix[0])
  y = x[None]
  for axis, count in enumerate(counts, start=2):
    pieces = [lax.slice_in_dim(y, i, i + m * (count - 1) + 1, m, axis) for i in range(length)]
    y = jnp.stack([_combine(row, pieces) for row in matrix], 1)
    y = y.reshape(-1, *y.shape[2:])
  return y


def _untile(products, m, rank):
  """`(a^d, n, *T, C_out)` products -> `(n, *(T * m), C_out)` outputs: `A^T` along each axis, each
  tile's `m` outputs put in place."""
  at = TRANSFORMS[m]["AT"]
  y = products
  for axis in range(rank):
    y = y.reshape(len(at[0]), -1, *y.shape[1:])
    y = jnp.stack([_combine(row, list(y)) for row in at], 3 + axis)
    shape = y.shape
    y = y.reshape(*shape[: 2 + axis], shape[2 + axis] * m, *shape[4 + axis :])
  return y[0]


def _kernel_transform(w, matrix):
  """`matrix` `(a, 3)` applied along every spatial axis of `w` `(*window, C, C_out)`: `(a,) * d + (C, C_out)` (with
  `G`: the kernel's transform; with `G^T` on a transformed kernel: its transpose). One product with the matrix's
  Kronecker power `(a^d, 3^d)` over the flattened taps (one product per axis compiled 1.1-1.2x slower)."""
  rank = w.ndim - 2
  power = functools.reduce(np.kron, [np.asarray(matrix)] * rank).astype(w.dtype)
  taps = w.reshape(-1, *w.shape[-2:])
  transformed = lax.dot_general(power, taps, (((1,), (0,)), ((), ())))
  return transformed.reshape(*(len(matrix),) * rank, *w.shape[-2:])


def _pad_to_tiles(a, counts, m, extra):
  """Zeros after each spatial axis up to `count * m + extra`."""
  return pad_spatial(a, [(0, t * m + extra - s) for t, s in zip(counts, a.shape[1:-1])])


def _transformed_input(xp, plan):
  """`V`: the input tiles transformed by `B^T`, `(a^d, n * prod(T), C)`, and the tiles per axis `T`."""
  m = plan.tile
  counts = tiles(plan.out, m)
  v = _tile_transform(_pad_to_tiles(xp, counts, m, TAPS - 1), TRANSFORMS[m]["BT"], m, counts)
  return v.reshape(len(v), -1, xp.shape[-1]), counts


def forward(xp, w, plan):
  """`(n, *P, C)` padded input, `(3, ..., 3, C, C_out)` kernel -> `(n, *O, C_out)` in `plan.accum`."""
  m, rank, (channels, c_out) = plan.tile, w.ndim - 2, w.shape[-2:]
  v, counts = _transformed_input(xp, plan)
  u = _kernel_transform(w.astype(plan.accum), TRANSFORMS[m]["G"]).reshape(len(v), channels, c_out)
  products = batched_matmul(v, u.astype(v.dtype), plan)
  y = _untile(products.reshape(len(v), xp.shape[0], *counts, c_out), m, rank)
  return lax.slice(y, (0,) * y.ndim, (y.shape[0], *plan.out, c_out))


def kernel_grad(xp, g, plan):
  """`forward`'s transpose in `w` for cotangent `g` `(n, *O, C_out)`: `(3, ..., 3, C, C_out)` in `plan.accum`."""
  m, rank, channels, c_out = plan.tile, g.ndim - 2, xp.shape[-1], g.shape[-1]
  v, counts = _transformed_input(xp, plan)
  dm = _tile_transform(_pad_to_tiles(g, counts, m, 0), np.transpose(TRANSFORMS[m]["AT"]).tolist(), m, counts)
  du = batched_matmul(v, dm.reshape(len(dm), -1, c_out), plan, ((1,), (1,)))
  transposed_g = np.transpose(TRANSFORMS[m]["G"]).tolist()
  return _kernel_transform(du.reshape(*(m + TAPS - 1,) * rank, channels, c_out), transposed_g)
