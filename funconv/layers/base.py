"""The layer protocol, and the trace-time context that `batched`, `summary` and
`receptive_field` share with the layers.

A layer is `Layer(init, apply)`: `init(key, input_shape) -> (output_shape, params, state)` and
`apply(params, state, x, *, key=None, train=False) -> (y, state)`, for one example.

Every funconv layer is also *batch-polymorphic*: under `funconv.batched` it is handed the whole
batch at once (`batch_rank() == 1`), which lets a convolution run as one batched GEMM rather
than as a vmap of per-example ones. A layer from elsewhere is vmapped there instead, so it
only ever sees one example.
"""
import contextlib
import contextvars
import math
from typing import Any, Callable, NamedTuple

import jax


class Layer(NamedTuple):
  """A pair of pure functions; see the module docstring for their signatures."""
  init: Callable[..., tuple[Any, Any, Any]]
  apply: Callable[..., tuple[Any, Any]]


class BatchContext(NamedTuple):
  axis_name: Any   # the name the examples' axis would have under vmap
  size: int


_BATCH: contextvars.ContextVar[BatchContext | None] = contextvars.ContextVar("funconv_batch", default=None)
_RECORDER: contextvars.ContextVar["Recorder | None"] = contextvars.ContextVar("funconv_recorder", default=None)


def batch_rank() -> int:
  """How many leading batch axes a layer's `x` has: 1 under `batched`, 0 otherwise."""
  return 0 if _BATCH.get() is None else 1


def trailing(v, x):
  """`v` (shape `(C,)`, or any trailing part of `x`'s shape) with leading unit axes to `x`'s rank:
  an explicit broadcast, so layers run under `jax_numpy_rank_promotion="raise"`."""
  return v.reshape((1,) * (x.ndim - v.ndim) + v.shape)


def batch_context() -> BatchContext | None:
  return _BATCH.get()


@contextlib.contextmanager
def lifted(axis_name, size):
  """Within this block funconv layers receive whole batches of `size` examples."""
  token = _BATCH.set(BatchContext(axis_name, size))
  try:
    yield
  finally:
    _BATCH.reset(token)


@contextlib.contextmanager
def unlifted():
  """Within this block layers see one example (inside a vmap)."""
  token = _BATCH.set(None)
  try:
    yield
  finally:
    _BATCH.reset(token)


def polymorphic(apply):
  """Mark `apply` as one that handles `batch_rank()` leading batch axes itself."""
  apply.batch_polymorphic = True
  return apply


def apply_child(apply, params, state, x, key, train):
  """Call a child layer: directly, or per example under vmap if it cannot take a batch."""
  ctx = _BATCH.get()
  if ctx is None or getattr(apply, "batch_polymorphic", False):
    return apply(params, state, x, key=key, train=train)

  def one(x, key):
    with unlifted():
      return apply(params, state, x, key=key, train=train)

  return jax.vmap(one, in_axes=(0, None if key is None else 0), out_axes=(0, None),
                  axis_name=ctx.axis_name)(x, key)


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
  """A recorded, batch-polymorphic `Layer`.

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

  return Layer(recorded_init, polymorphic(apply))


def is_batched_key(key) -> bool:
  """Whether `key` holds one PRNG key per example (as `batched` hands them to layers)."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim == 1
  return key.ndim == 2  # raw uint32 keys are (2,) each


def split_key(key, n):
  """`n` independent keys from `key` (a list of Nones for None); per example for batched keys."""
  if key is None:
    return [None] * n
  if is_batched_key(key):
    keys = jax.vmap(lambda k: jax.random.split(k, n))(key)
    return [keys[:, i] for i in range(n)]
  return list(jax.random.split(key, n))


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
