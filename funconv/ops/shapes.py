"""Shape rules and argument checks of convolution and pooling: the one place ops and layers read them.

Output sizes (convolution, transposed convolution, pooling), padding specifications resolved to
`(low, high)` pairs, the window fitting the padded input, groups dividing the channels, dtypes.
"""

import math
import operator
from typing import Sequence

import jax.numpy as jnp
from jax import lax

# Modes that pad with copies of the input rather than with zeros, and the jnp.pad mode for each.
EDGE_MODES = {"CIRCULAR": "wrap", "REFLECT": "reflect"}
_STRING_MODES = ("SAME", "SAME_LOWER", "VALID", "CAUSAL", *EDGE_MODES)


def _as_int(value) -> int | None:
  """`value` as a Python int if it is an integer (a bool is not), else None."""
  try:
    return None if isinstance(value, bool) else operator.index(value)
  except TypeError:
    return None


def _is_sequence(value) -> bool:
  """A tuple, list or 1-D array: what may hold one int per axis."""
  return isinstance(value, (tuple, list)) or getattr(value, "ndim", None) == 1


def positive_int(value, name: str, op: str) -> int:
  """`value` as an int >= 1: a count, size, stride or dilation. Raises TypeError (not an integer) or ValueError
  (below 1) naming `op`, the argument `name` and the value."""
  n = _as_int(value)
  if n is None:
    raise TypeError(f"{op}: {name} must be an int >= 1, got {value!r} of type {type(value).__name__}")
  if n < 1:
    raise ValueError(f"{op}: {name} must be an int >= 1, got {name}={value!r}")
  return n


def as_tuple(value, rank: int, name: str, op: str) -> tuple[int, ...]:
  """`value` (None, an int, or one int per spatial axis) as `rank` positive ints.

  None means 1 on every axis, an int that value on every axis. Raises ValueError (TypeError for
  a value that is not an int or a sequence of ints) naming `op`, `name` and the value.
  """
  if value is None:
    return (1,) * rank
  if _as_int(value) is not None:
    return (positive_int(value, name, op),) * rank
  if not _is_sequence(value):
    raise TypeError(f"{op}: {name} must be an int or {rank} ints (one per spatial axis), got {value!r}")
  if len(value) != rank:
    raise ValueError(f"{op}: {name} must be an int or {rank} ints (one per spatial axis), got {value!r}")
  return tuple(positive_int(v, f"{name}[{i}]", op) for i, v in enumerate(value))


def spatial_rank(op: str, **window_args) -> int | None:
  """The spatial rank that a layer's window arguments (`filter_shape=`, `strides=`, ...) fix: the length of those
  given as sequences, or None when each is an int or None, the rank then being the input's (`Conv(8, 3)` is 3x3
  on images and 3 on sequences). Checks every argument as `as_tuple` does, and that the sequences agree."""
  ranks = {name: len(v) for name, v in window_args.items() if _as_int(v) is None and _is_sequence(v)}
  if len(set(ranks.values())) > 1:
    raise ValueError(
      f"{op}: {' and '.join(ranks)} must have one entry per spatial axis each, got "
      + ", ".join(f"{name}={window_args[name]!r}" for name in ranks)
    )
  rank = next(iter(ranks.values()), None)
  for name, value in window_args.items():
    as_tuple(value, rank or 1, name, op)
  return rank


def layer_window(op: str, **window_args):
  """Checks a layer's window arguments now (`filter_shape=`, `strides=`, ...; see `spatial_rank`) and returns
  `resolve(input_shape)`: their values with one int per spatial axis of the input `(*spatial, C)`, whose rank must
  be the one they fix, or any rank from 1 on when they are all ints."""
  rank = spatial_rank(op, **window_args)
  noun = next(iter(window_args)).removesuffix("_shape")

  def resolve(input_shape):
    spatial = len(input_shape) - 1
    if rank is not None and spatial != rank:
      raise ValueError(
        f"{op}: a {rank}-D {noun} needs input_shape (*spatial, C) with {rank} spatial axes, got {tuple(input_shape)}"
      )
    if spatial < 1:
      raise ValueError(
        f"{op}: needs input_shape (*spatial, C) with at least one spatial axis, got {tuple(input_shape)}"
      )
    return tuple(as_tuple(value, spatial, name, op) for name, value in window_args.items())

  return resolve


def as_shape(shape, name: str, op: str) -> tuple[int, ...]:
  """`shape` as a tuple of ints >= 0 (an array's shape); TypeError or ValueError naming `op`, `name` and the value."""
  sizes = [_as_int(n) for n in shape] if _is_sequence(shape) else [None]
  if None in sizes:
    raise TypeError(f"{op}: {name} must be a tuple of ints, got {shape!r}")
  if any(n < 0 for n in sizes):
    raise ValueError(f"{op}: {name} must be a tuple of ints >= 0, got {tuple(sizes)}")
  return tuple(sizes)


def dilate_size(size: int, dilation: int) -> int:
  """Extent of `size` taps spaced `dilation` apart: `dilation * (size - 1) + 1` (0 for `size == 0`).

  The dilated window size `K'` of the shape rules.

  Args:
    size: the number of taps `K`, an int >= 0.
    dilation: the distance `D` between taps, an int >= 1 (not checked).

  Returns:
    An int.

  Examples:
    >>> import funconv as fc
    >>> fc.ops.dilate_size(3, 2)      # taps at 0, 2, 4
    5
    >>> fc.ops.dilate_size(3, 1), fc.ops.dilate_size(0, 4)
    (3, 0)
  """
  return dilation * (size - 1) + 1 if size > 0 else 0


def conv_output_size(
  in_size: int, window: int, stride: int = 1, padding: tuple[int, int] = (0, 0), dilation: int = 1
) -> int:
  """Output length of one spatial axis: `floor((W + lo + hi - K') / S) + 1` with `K' = D (K - 1) + 1`.

  With symmetric padding `P` this is the textbook `(W - K + 2P) / S + 1`.

  Args:
    in_size: the input length `W`, an int.
    window: the window size `K`, an int.
    stride: `S`, an int >= 1 (default 1).
    padding: one `(low, high)` pair of ints (default `(0, 0)`); see `resolve_padding` to get it from
      a string.
    dilation: `D`, an int >= 1 (default 1).

  Returns:
    An int: 0 or less when the dilated window does not fit in the padded input.

  Raises:
    TypeError: `stride` or `dilation` is not an int.
    ValueError: `stride` or `dilation` is below 1.

  Examples:
    >>> import funconv as fc
    >>> fc.ops.conv_output_size(28, 5)                                   # (28 - 5) / 1 + 1
    24
    >>> fc.ops.conv_output_size(28, 3, stride=2, padding=(1, 1))         # floor((28 + 2 - 3) / 2) + 1
    14
    >>> fc.ops.conv_output_size(4, 3, dilation=2)                        # K' = 5 does not fit
    0
  """
  stride, dilation = (
    positive_int(stride, "stride", "conv_output_size"),
    positive_int(dilation, "dilation", "conv_output_size"),
  )
  return (in_size + padding[0] + padding[1] - dilate_size(window, dilation)) // stride + 1


def window_reach(window: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
  """Per axis, how far past its first input element a dilated window reaches: `D (K - 1)`."""
  return tuple(dilate_size(k, d) - 1 for k, d in zip(window, dilation))


def output_shape(in_shape, window, strides, pairs, dilation) -> tuple[int, ...]:
  """`conv_output_size` on every spatial axis, padding resolved to `(low, high)` pairs."""
  return tuple(conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip(in_shape, window, strides, pairs, dilation))


def resolve_padding(
  padding, in_shape: Sequence[int], window: Sequence[int], strides: Sequence[int], dilation: Sequence[int], op: str
) -> tuple[tuple[tuple[int, int], ...], str]:
  """Resolve a padding specification to `(pairs, fill)`, as `conv` and the pooling ops do.

  Accepted specifications:

  - `"VALID"`: no padding. `"SAME"` (`"SAME_LOWER"`): output size `ceil(W / S)`, the odd pixel on
    the high (low) side, as in `lax.conv_general_dilated`.
  - `"CAUSAL"` (1-D only): `D (K - 1)` zeros before the signal, none after, so output `t` sees
    inputs up to `t`.
  - `"CIRCULAR"`, `"REFLECT"`: the amounts of `"SAME"`, filled by wrapping or mirroring the input.
  - an int `p` (`p` on both sides of every axis) or one `(low, high)` pair per spatial axis
    (used as given: not checked to leave an output).

  Strings are case-insensitive.

  Args:
    padding: the specification.
    in_shape: the spatial input shape `(*spatial,)`.
    window: the window size per spatial axis `K`, ints.
    strides: one stride per spatial axis `S`, ints.
    dilation: one kernel dilation per spatial axis `D`, ints.
    op: the name of the calling function, for error messages.

  Returns:
    `(pairs, fill)`: `pairs` one `(low, high)` pair of ints per spatial axis; `fill` is `"constant"`
    (zeros), `"wrap"` (CIRCULAR) or `"reflect"` (REFLECT), a `jnp.pad` mode.

  Raises:
    ValueError: an unknown string; `"CAUSAL"` with a window that is not 1-D; `"REFLECT"` with a pad
      as large as the input; pairs that are not ints or not one per spatial axis.

  Examples:
    >>> import funconv as fc
    >>> fc.ops.resolve_padding("SAME", (28, 28), (3, 3), (2, 2), (1, 1), "conv")     # the odd pixel high
    (((0, 1), (0, 1)), 'constant')
    >>> fc.ops.resolve_padding("CAUSAL", (10,), (3,), (1,), (2,), "conv")             # D (K - 1) = 4 before
    (((4, 0),), 'constant')
    >>> fc.ops.resolve_padding("reflect", (8, 8), (3, 3), (1, 1), (1, 1), "conv")
    (((1, 1), (1, 1)), 'reflect')
    >>> fc.ops.resolve_padding(2, (8,), (3,), (1,), (1,), "conv")
    (((2, 2),), 'constant')
  """
  rank = len(window)
  dilated = [dilate_size(k, d) for k, d in zip(window, dilation)]
  if isinstance(padding, str):
    mode = padding.upper()
    if mode not in _STRING_MODES:
      raise ValueError(
        f"{op}: unknown padding {padding!r}; expected one of {', '.join(_STRING_MODES)}, "
        "an int, or one (low, high) pair per spatial axis"
      )
    if mode == "CAUSAL":
      if rank != 1:
        raise ValueError(f"{op}: padding='CAUSAL' is for 1-D windows, got a {rank}-D window {tuple(window)}")
      return ((dilated[0] - 1, 0),), "constant"
    lax_mode = "SAME" if mode in EDGE_MODES else mode
    pairs = tuple(tuple(p) for p in lax.padtype_to_pads(tuple(in_shape), dilated, tuple(strides), lax_mode))
    fill = EDGE_MODES.get(mode, "constant")
    if fill == "reflect" and any(max(p) >= n for p, n in zip(pairs, in_shape)):
      raise ValueError(
        f"{op}: padding='REFLECT' needs every pad smaller than the input; pads {pairs} "
        f"for spatial shape {tuple(in_shape)}"
      )
    return pairs, fill
  if _as_int(padding) is not None:
    padding = ((padding, padding),) * rank
  try:
    pairs = tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)
  except (TypeError, ValueError):
    raise ValueError(
      f"{op}: padding must be a string, an int or {rank} (low, high) pairs of ints, got {padding!r}"
    ) from None
  if len(pairs) != rank:
    raise ValueError(f"{op}: padding needs one (low, high) pair per spatial axis ({rank}), got {padding!r}")
  return pairs, "constant"


def conv_output_shape(
  in_shape: Sequence[int],
  window: Sequence[int],
  strides=None,
  padding="VALID",
  dilation=None,
  op: str = "conv_output_shape",
) -> tuple[int, ...]:
  """Spatial output shape of a convolution or pooling window over spatial shape `in_shape`.

  Per axis the rule is `conv_output_size`: `floor((W + lo + hi - D (K - 1) - 1) / S) + 1`. This is
  the rule the layers use for shape inference.

  Args:
    in_shape: the spatial input shape `(*spatial,)`, ints >= 0 (no batch or channel axis).
    window: int or one int per spatial axis.
    strides: int or one int per spatial axis (default 1).
    padding: any specification `resolve_padding` takes (default `"VALID"`).
    dilation: int or one int per spatial axis (default 1).
    op: the name used in error messages.

  Returns:
    A tuple of ints, one per spatial axis. Entries below 1 mean the window does not fit (no error
    is raised here).

  Raises:
    TypeError: `in_shape`, `window`, `strides` or `dilation` is not an int or ints.
    ValueError: sizes below 1 (below 0 in `in_shape`); sequences of different lengths; an unknown
      padding (see `resolve_padding`).

  Examples:
    >>> import funconv as fc
    >>> fc.ops.conv_output_shape((28, 28), (5, 5))
    (24, 24)
    >>> fc.ops.conv_output_shape((32, 32), (3, 3), strides=2, padding="SAME")
    (16, 16)
  """
  in_shape = as_shape(in_shape, "in_shape", op)
  rank = spatial_rank(op, window=window, strides=strides, dilation=dilation) or len(in_shape)
  if len(in_shape) != rank:
    raise ValueError(f"{op}: in_shape {in_shape} must have one size per window axis ({rank}), window={window!r}")
  window, strides, dilation = (
    as_tuple(v, rank, name, op) for name, v in (("window", window), ("strides", strides), ("dilation", dilation))
  )
  pairs, _ = resolve_padding(padding, in_shape, window, strides, dilation, op)
  return output_shape(in_shape, window, strides, pairs, dilation)


def check_window_fits(out: Sequence[int], in_shape: Sequence[int], window: Sequence[int], pairs, dilation, op: str):
  """Raise ValueError, naming `op` and the shapes, when an output length is below 1: the (dilated)
  window is larger than the padded input."""
  if any(o < 1 for o in out):
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_shape, pairs))
    raise ValueError(
      f"{op}: window {tuple(window)} with dilation {tuple(dilation)} is larger than the "
      f"padded input {padded} (input spatial shape {tuple(in_shape)}, padding {tuple(pairs)})"
    )


def resolve_window(
  in_shape: Sequence[int], window: Sequence[int], strides: Sequence[int], padding, dilation: Sequence[int], op: str
):
  """`(pairs, fill, out)` of a convolution or pooling window over spatial shape `in_shape`: the
  resolved padding (`resolve_padding`), and the spatial output shape, checked to be non-empty
  (`check_window_fits`). Ops and layers all read their output shapes here."""
  pairs, fill = resolve_padding(padding, in_shape, window, strides, dilation, op)
  out = output_shape(in_shape, window, strides, pairs, dilation)
  check_window_fits(out, in_shape, window, pairs, dilation, op)
  return pairs, fill, out


def check_groups(channels: int, c_out: int, groups, op: str, shapes: str = "", kernel_in: int | None = None):
  """Raise ValueError, naming `op` and `shapes`, unless `groups` is a positive int dividing `channels`
  and `c_out`, and (given a kernel's `kernel_in` input channels) `channels == groups * kernel_in`."""
  positive_int(groups, "groups", op)
  if channels % groups or c_out % groups:
    raise ValueError(
      f"{op}: groups={groups} must divide the input channels ({channels}) and the output channels ({c_out}){shapes}"
    )
  if kernel_in is not None and channels != groups * kernel_in:
    raise ValueError(
      f"{op}: with groups={groups}, x's {channels} input channels must equal groups * w.shape[-2] "
      f"= {groups * kernel_in}{shapes}"
    )


def transpose_padding(window, strides, dilation, padding, op="conv_transpose"):
  """`lax.conv_transpose`'s padding of the spread input, one `(low, high)` pair per spatial axis.

  `"SAME"` and `"VALID"` name the padding of the forward convolution this one transposes, so
  `"SAME"` gives output size `W * S`, `"VALID"` gives `W * S + max(K' - S, 0)` (`K' = D (K - 1) +
  1`); an int or pairs pad the spread input directly (as in `resolve_padding`).

  Args:
    window: the window size per spatial axis, ints.
    strides: one stride per spatial axis, ints.
    dilation: one kernel dilation per spatial axis, ints.
    padding: `"SAME"`, `"VALID"` (case-insensitive), an int or one `(low, high)` pair per axis.
    op: the name used in error messages (default `"conv_transpose"`).

  Returns:
    A tuple of `(low, high)` int pairs, one per spatial axis.

  Raises:
    ValueError: any other string; pairs that are not one per spatial axis.

  Examples:
    >>> import funconv as fc
    >>> pairs = fc.ops.transpose_padding((4, 4), (2, 2), (1, 1), "SAME")
    >>> pairs
    ((2, 2), (2, 2))
    >>> fc.ops.conv_transpose_output_shape((16, 16), (4, 4), (2, 2), pairs, (1, 1))   # W * S
    (32, 32)
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


def conv_transpose_output_shape(in_shape, window, strides, pairs, dilation) -> tuple[int, ...]:
  """Spatial output shape of a transposed convolution that pads its spread input by `pairs`.

  Per axis `S (W - 1) + 1 + lo + hi - D (K - 1)`: the input spread with `S - 1` zeros between
  elements, padded, then correlated with the dilated window.

  Args:
    in_shape: the spatial input shape `(*spatial,)`, ints.
    window: the window size per spatial axis, ints.
    strides: one stride per spatial axis, ints.
    pairs: one `(low, high)` pair per spatial axis, e.g. from `transpose_padding`.
    dilation: one kernel dilation per spatial axis, ints.

  Returns:
    A tuple of ints, one per spatial axis; below 1 where the padding leaves no output. Arguments
    are not checked.

  Examples:
    >>> import funconv as fc
    >>> fc.ops.conv_transpose_output_shape((3,), (2,), (2,), ((1, 1),), (1,))   # 2 * 2 + 1 + 2 - 1
    (6,)
  """
  return tuple(
    s * (n - 1) + 1 + lo + hi - r for n, s, (lo, hi), r in zip(in_shape, strides, pairs, window_reach(window, dilation))
  )


def check_inexact(x, op: str, name: str = "x", complex_ok: bool = True):
  """Raise TypeError unless `x` has a floating (or, where `complex_ok`, complex) dtype: an integer
  convolution would silently truncate."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.inexact if complex_ok else jnp.floating):
    kinds = "floating-point or complex" if complex_ok else "floating-point"
    raise TypeError(
      f"{op}: {name} must be a {kinds} array, got dtype {dtype} "
      f"(shape {jnp.shape(x)}); cast it first, e.g. {name}.astype(jnp.float32)"
    )


def flatten_batch(x, rank: int, op: str):
  """Fold the leading batch axes of `x` (`(*batch, *spatial, C)`) into one.

  Returns `(x_3d, batch_shape)` where `x_3d` has shape `(prod(batch), *spatial, C)`.
  """
  if x.ndim < rank + 1:
    raise ValueError(
      f"{op}: x must have {rank} spatial axes and a channel axis (at least {rank + 1} "
      f"dims, channels last) for a {rank}-D window, got shape {x.shape}"
    )
  batch = x.shape[: x.ndim - rank - 1]
  return x.reshape((math.prod(batch), *x.shape[x.ndim - rank - 1 :])), batch
