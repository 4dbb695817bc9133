"""Scatters (col2im): each kernel tap's `(n, *O, C)` part added back onto the padded grid `(n, *P, C)`,
the transpose of `gather.taps`."""

import jax.numpy as jnp
from jax import lax

from funconv.ops.gather import tap_starts, window_offsets
from funconv.ops.padding import pad_spatial


def col2im(parts, window, plan):
  """Add tap `k`'s part `(n, *O, C)` onto the positions `D k + S o` of the grid `(n, *P, C)`.

  Position `S q + r` (phase `r < S`) gets the taps with `D k = r (mod S)`, shifted by
  `floor(D k / S)`: per phase a sum of unstrided shifts, then the phases are interleaved. No
  zeros are spread between elements (interior padding, a slow fusion on CPU), and no work is
  done for them.
  """
  n, channels = parts[0].shape[0], parts[0].shape[-1]
  phase_shape = tuple(-(-p // s) for p, s in zip(plan.padded, plan.strides))  # Q = ceil(P / S)
  phases = {}
  for part, tap in zip(parts, window_offsets(window)):
    starts = [k * d for k, d in zip(tap, plan.dilation)]
    phase = tuple(b % s for b, s in zip(starts, plan.strides))
    shifts = [b // s for b, s in zip(starts, plan.strides)]
    placed = pad_spatial(part, [(b, q - b - o) for b, q, o in zip(shifts, phase_shape, plan.out)])
    phases[phase] = phases[phase] + placed if phase in phases else placed
  if all(s == 1 for s in plan.strides):
    grid = phases[(0,) * len(window)]
  else:
    zeros = jnp.zeros((n, *phase_shape, channels), parts[0].dtype)
    stacked = jnp.stack([phases.get(r, zeros) for r in window_offsets(plan.strides)])
    stacked = stacked.reshape(*plan.strides, n, *phase_shape, channels)
    rank = len(window)
    # (S1, .., Sd, n, Q1, .., Qd, C) -> (n, Q1, S1, .., Qd, Sd, C): phase r of q is position S q + r.
    order = (rank, *(a for i in range(rank) for a in (rank + 1 + i, i)), 2 * rank + 1)
    grid = stacked.transpose(order).reshape(n, *(q * s for q, s in zip(phase_shape, plan.strides)), channels)
  return lax.slice(grid, (0,) * grid.ndim, (n, *plan.padded, channels))


def col2im_in_place(parts, window, plan):
  """Stride-1 `col2im` of `parts` `(n, *O, K, C)`: each tap's part added onto its window of the
  grid in place, one tap per step of a loop.

  With few channels `col2im`'s pads and adds fuse into one loop that tests, element by element,
  which taps reach it, and does not vectorise; here each step adds contiguous rows (2x faster
  on LeNet-5's 14x14x6 layer), and the loop body is compiled once for all taps.
  """
  n, channels = parts.shape[0], parts.shape[-1]
  start = tap_starts(window, plan)

  def add_tap(i, grid):
    part = lax.dynamic_index_in_dim(parts, i, axis=-2, keepdims=False)
    at = (*start(i), 0)
    return lax.dynamic_update_slice(grid, lax.dynamic_slice(grid, at, part.shape) + part, at)

  return lax.fori_loop(0, parts.shape[-2], add_tap, jnp.zeros_like(parts, shape=(n, *plan.padded, channels)))
