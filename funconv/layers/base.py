"""The layer protocol, and the recorder that `summary` and `receptive_field` read at `init`.

A layer is `Layer(init, apply)`: `init(key, input_shape) -> (output_shape, params, state)` and
`apply(params, state, x, *, key=None, train=False) -> (y, state)`, for one example. Batches
come from `jax.vmap` (or `funconv.batched`): the convolution primitive's batching rule makes a
vmapped per-example convolution one batched call, so a layer never needs to know it is batched.
"""
import contextlib
import contextvars
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from funconv.ops.shapes import check_inexact


class Layer(NamedTuple):
  """A pair of pure functions; see the module docstring for their signatures."""
  init: Callable[..., tuple[Any, Any, Any]]
  apply: Callable[..., tuple[Any, Any]]


_RECORDER: contextvars.ContextVar["Recorder | None"] = contextvars.ContextVar("funconv_recorder", default=None)


def trailing(v, x):
  """`v` (shape `(C,)`, or any trailing part of `x`'s shape) with leading unit axes to `x`'s rank:
  an explicit broadcast, so layers run under `jax_numpy_rank_promotion="raise"`."""
  return v.reshape((1,) * (x.ndim - v.ndim) + v.shape)


def promote(name, dtype, x, *params):
  """`[x, *params]` cast to `dtype`, or where `dtype` is None to their result type (Flax's
  `promote_dtype`): a layer computes in one dtype whatever its params are stored in. None
  entries (absent params) stay None. An integer or boolean `x` raises a TypeError naming layer `name`."""
  check_inexact(x, name, "x")
  arrays = (x, *params)
  dtype = jnp.result_type(*(a for a in arrays if a is not None)) if dtype is None else dtype
  return [None if a is None else jnp.asarray(a, dtype) for a in arrays]


class Recorder:
  """Collects one row per layer during `init`, for `summary` and `receptive_field`.

  `field` mirrors the shapes flowing through `init`: a tuple with, per spatial axis, a `(jump,
  size, start)` triple (distance in input pixels between neighbouring outputs, receptive-field
  size, centre of the first output's field); a list of those for a list of shapes (between
  `FanOut` and a fan-in); or None once the spatial layout is gone (after Flatten or a global pool).
  """

  def __init__(self, input_shape):
    self.rows = []
    self.path = []
    rank = len(input_shape) - 1
    self.field = ((1, 1, 0.0),) * rank if rank > 0 else None


@contextlib.contextmanager
def recording(input_shape):
  rec = Recorder(input_shape)
  token = _RECORDER.set(rec)
  try:
    yield rec
  finally:
    _RECORDER.reset(token)


@contextlib.contextmanager
def scope(name):
  """Name the layers initialised inside after their container, e.g. `serial.2.Conv`."""
  rec = _RECORDER.get()
  if rec is not None:
    rec.path.append(name)
  try:
    yield
  finally:
    if rec is not None:
      rec.path.pop()


def _param_count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def layer(name, init, apply, *, macs=None, window=None, flattens=False):
  """A recorded `Layer`.

  `macs(input_shape, output_shape)` counts multiply-accumulates for one example; `window(input_shape)`
  returns per spatial axis `(kernel, stride, dilation, low_pad)` for the receptive field;
  `flattens` says the layer mixes every position (Flatten, global pools).
  """
  def recorded_init(key, input_shape):
    output_shape, params, state = init(key, input_shape)
    rec = _RECORDER.get()
    if rec is not None:
      if flattens:
        rec.field = None
      elif window is not None and isinstance(rec.field, tuple):
        rec.field = tuple((jump * s, size + (k - 1) * d * jump, start + ((k - 1) * d / 2 - lo) * jump)
                          for (jump, size, start), (k, s, d, lo) in zip(rec.field, window(input_shape)))
      rec.rows.append(dict(name=".".join([*rec.path, name]), input_shape=tuple(input_shape),
                           output_shape=tuple(output_shape), params=_param_count(params),
                           state=_param_count(state), macs=macs(input_shape, output_shape) if macs else 0,
                           field=rec.field if isinstance(rec.field, tuple) else None))
    return output_shape, params, state

  return Layer(recorded_init, apply)


def split_key(key, n):
  """`n` independent keys from `key` (a list of Nones for None)."""
  return [None] * n if key is None else list(jax.random.split(key, n))


def fan_out_field(n):
  rec = _RECORDER.get()
  if rec is not None:
    rec.field = [rec.field] * n


def merge_fields():
  """After a fan-in: the widest of the incoming receptive fields."""
  rec = _RECORDER.get()
  if rec is not None and isinstance(rec.field, list):
    fields = [f for f in rec.field if isinstance(f, tuple)]
    rec.field = max(fields, key=lambda f: [size for _, size, _ in f]) if len(fields) == len(rec.field) else None


def child_fields():
  """The incoming per-branch fields of a `parallel`, and a setter for each child in turn."""
  rec = _RECORDER.get()
  return rec, (list(rec.field) if rec is not None and isinstance(rec.field, list) else None)
