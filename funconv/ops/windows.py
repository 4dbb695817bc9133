"""Window geometry shared by convolution and pooling: argument checks, output sizes, slices."""
import itertools
import math
from typing import Sequence

import jax.numpy as jnp
from jax import lax


def as_tuple(value, rank: int, name: str, op: str) -> tuple[int, ...]:
  """`value` (None, an int, or one int per spatial axis) as `rank` positive ints.

  None means 1 on every axis. Raises ValueError naming `op` and `name` otherwise.
  """
  if value is None:
    return (1,) * rank
  if isinstance(value, int):
    value = (value,) * rank
  value = tuple(value)
  if len(value) != rank or not all(isinstance(v, (int,)) or hasattr(v, "__index__") for v in value):
    raise ValueError(f"{op}: {name} must be an int or {rank} ints (one per spatial axis), got {value!r}")
  value = tuple(int(v) for v in value)
  if any(v < 1 for v in value):
    raise ValueError(f"{op}: every {name} must be >= 1, got {name}={value}")
  return value


def dilate_size(size: int, dilation: int) -> int:
  """Extent of `size` taps spaced `dilation` apart: `dilation * (size - 1) + 1`."""
  return dilation * (size - 1) + 1 if size > 0 else 0


def conv_output_size(in_size: int, window: int, stride: int = 1, padding: tuple[int, int] = (0, 0),
                     dilation: int = 1) -> int:
  """Output length of one spatial axis: `floor((W + lo + hi - K') / S) + 1` with `K' = D (K - 1) + 1`.

  With symmetric padding `P` this is the textbook `(W - K + 2P) / S + 1`. Returns 0 or less when
  the dilated window does not fit in the padded input.
  """
  return (in_size + padding[0] + padding[1] - dilate_size(window, dilation)) // stride + 1


def window_offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
  """Every kernel tap, in row-major order: the order of an HWIO kernel's leading axes."""
  return list(itertools.product(*(range(k) for k in window)))


def strided_window_slice(x, start: Sequence[int], out: Sequence[int], strides: Sequence[int]):
  """`x[:, start_i : start_i + s_i (out_i - 1) + 1 : s_i, ..., :]` for `x` of shape `(N, *spatial, C)`.

  The slice of every input element that meets the kernel tap at `start` (tap index times dilation).
  """
  limits = tuple(b + s * (o - 1) + 1 for b, s, o in zip(start, strides, out))
  return lax.slice(x, (0, *start, 0), (x.shape[0], *limits, x.shape[-1]), (1, *strides, 1))


def check_float(x, op: str, name: str = "x"):
  """Raise TypeError unless `x` has a floating dtype: integer convolution would silently truncate."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(f"{op}: {name} must be a floating-point array, got dtype {jnp.result_type(x)} "
                    f"(shape {jnp.shape(x)}); cast it first, e.g. {name}.astype(jnp.float32)")


def flatten_batch(x, rank: int, op: str):
  """Fold the leading batch axes of `x` (`(*batch, *spatial, C)`) into one.

  Returns `(x_3d, batch_shape)` where `x_3d` has shape `(prod(batch), *spatial, C)`.
  """
  if x.ndim < rank + 1:
    raise ValueError(f"{op}: x must have {rank} spatial axes and a channel axis (at least {rank + 1} "
                     f"dims, channels last) for a {rank}-D window, got shape {x.shape}")
  batch = x.shape[:x.ndim - rank - 1]
  return x.reshape((math.prod(batch), *x.shape[x.ndim - rank - 1:])), batch
