"""Dilated stride-1 convolutions as undilated ones over the input's phases (space-to-batch).

A kernel dilated by `d` along an axis meets input elements `d` apart: the output at `o` reads
`o, o + d, ..., o + d (K - 1)`, all congruent to `o` modulo `d`. So the padded input's `d` phases
(`xp[r::d]`, per axis) are convolved separately with the undilated kernel, each giving the outputs of
its phase (`y[r::d]`): `prod(d)` undilated convolutions, run as one over a batch `prod(d)` times
larger, whose outputs are interleaved back into place. Their gradients are the undilated
convolution's, through the same reshapes and transposes. The plan decides when
(`funconv.ops.plan.phase_spec`, at lowering, for the backend lowered for): where the undilated
convolution runs Winograd's algorithm, which needs dilation 1.
"""

from funconv.ops.padding import pad_spatial
from funconv.ops.plan import ConvSpec


def space_to_batch(x, factors):
  """`(n, *S, C)` with `S` divisible by `factors` -> `(n * prod(factors), *(S // factors), C)`, phase
  `r` (row-major over the axes) of example `i` at `i * prod(factors) + r`. Each reshape splits or
  merges one axis, as sharding types require of a batch-sharded array."""
  rank, y = len(factors), x
  for axis, f in enumerate(factors):
    at = 1 + 2 * axis
    y = y.reshape(*y.shape[:at], y.shape[at] // f, f, *y.shape[at + 1 :])
  y = y.transpose(0, *range(2, 2 * rank + 1, 2), *range(1, 2 * rank, 2), 2 * rank + 1)
  for _ in factors:
    y = y.reshape(y.shape[0] * y.shape[1], *y.shape[2:])
  return y


def batch_to_space(y, factors):
  """`space_to_batch`'s inverse: `(n * prod(factors), *S, C)` -> `(n, *(S * factors), C)`."""
  rank = len(factors)
  for f in reversed(factors):
    y = y.reshape(y.shape[0] // f, f, *y.shape[1:])
  y = y.transpose(0, *(a for axis in range(rank) for a in (1 + rank + axis, 1 + axis)), 2 * rank + 1)
  for axis in range(rank):
    y = y.reshape(*y.shape[: 1 + axis], y.shape[1 + axis] * y.shape[2 + axis], *y.shape[3 + axis :])
  return y


def conv(x3, w, spec: ConvSpec, phase: ConvSpec, undilated):
  """The convolution of `x3` `(n, *spatial, C)` with `w` under the dilated `spec`, computed as
  `undilated(phases, w)`, the convolution under `phase` (`plan.phase_spec(spec, ...)`), of
  `space_to_batch` of the padded input: `(n, *spec.out, C_out)`."""
  dilation = spec.dilation
  # The high pads grow by what rounds each padded axis up to a multiple of its dilation.
  ends = [(lo, hi + n * d - p) for (lo, hi), n, d, p in zip(spec.pads, phase.in_spatial, dilation, spec.padded)]
  y = undilated(space_to_batch(pad_spatial(x3, ends, spec.fill), dilation), w)
  y = batch_to_space(y, dilation)
  return y[(slice(None), *(slice(0, o) for o in spec.out), slice(None))]
