"""The layer protocol; the path naming each layer in `summary` and in error messages; the checks of `init`'s and
`apply`'s arguments; the recorder that `summary` and `receptive_field` read at `init`.

A layer is `Layer(init, apply)`: `init(key, input_shape) -> (output_shape, params, state)` and
`apply(params, state, x, *, key=None, train=False) -> (y, state)`, for one example. Batches
come from `jax.vmap` (or `funconv.batched`): the convolution primitive's batching rule makes a
vmapped per-example convolution one batched call, so a layer never needs to know it is batched.
Of this module only `Layer` is public (`funconv.Layer`); the rest serves the layers and combinators.
"""

import contextlib
import contextvars
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from funconv.ops.shapes import as_shape, check_inexact


class Layer(NamedTuple):
  """A layer: a pair of pure functions for one example, `Layer(init, apply)` (a namedtuple).

  A layer sees one example, with no batch axis: `batched` (or `jax.vmap`) maps it over a batch.
  Every funconv layer, combinator and model is one, and any pair of functions with these
  signatures is one too.

  Attributes:
    init: `init(key, input_shape) -> (output_shape, params, state)`. `key` is a PRNG key (layers
      without params accept None); `input_shape` one example's shape, a tuple of ints (a list of
      them for a layer after `FanOut`). `params` and `state` are pytrees (tuples; `()` where the
      layer has none): `params` trained, `state` updated by `apply` (`BatchNorm`'s running
      statistics).
    apply: `apply(params, state, x, *, key=None, train=False) -> (y, state)`. `x` is one example
      of shape `input_shape`; `y` has shape `output_shape`. `key` is needed where `train=True`
      draws random numbers (`Dropout`); `train` selects training behaviour (`Dropout`, `BatchNorm`).
      funconv's layers check `params` and `state` against what `init` makes for `x`'s shape and
      raise ValueError naming the layer's path where they differ.

  The layer values exported by funconv (`Flatten`, `Identity`, `Relu`, `LeakyRelu`, `Elu`, `Selu`,
  `Gelu`, `Sigmoid`, `Tanh`, `Softplus`, `Softmax`, `LogSoftmax`, `GlobalAvgPool`, `GlobalMaxPool`,
  `FanInSum`) are instances of this class, so `help()` on them shows this docstring: they are
  documented in their modules, `funconv.layers.core`, `funconv.layers.pool` and
  `funconv.combinators`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> out_shape, params, state = fc.Dense(3).init(jax.random.key(0), (5,))
    >>> out_shape, [p.shape for p in params], state
    ((3,), [(5, 3), (3,)], ())
    >>> y, state = fc.Dense(3).apply(params, state, jnp.ones(5))
    >>> y.shape
    (3,)
    >>> isinstance(fc.Relu, fc.Layer)
    True
    >>> Double = fc.Layer(lambda key, shape: (shape, (), ()),                 # a layer of your own
    ...                   lambda params, state, x, *, key=None, train=False: (2 * x, state))
    >>> fc.serial(Double, fc.Relu).apply(((), ()), ((), ()), jnp.array([-1.0, 1.0]))[0].tolist()
    [0.0, 2.0]
  """

  init: Callable[..., tuple[Any, Any, Any]]
  apply: Callable[..., tuple[Any, Any]]


_RECORDER: contextvars.ContextVar["Recorder | None"] = contextvars.ContextVar("funconv_recorder", default=None)
# The layer being initialised or applied: one (index in its container's params, label) per level; the label is the
# index or the name given with `funconv.named` (index None where a name adds a level of its own).
_PATH: contextvars.ContextVar[tuple[tuple[int | None, str], ...]] = contextvars.ContextVar("funconv_path", default=())
_CAPTURE: contextvars.ContextVar["dict | None"] = contextvars.ContextVar("funconv_capture", default=None)
UNKNOWN = "unknown"  # a receptive field funconv cannot compute (after a `from_stax` layer)


def path():
  """The path of the layer being initialised or applied, as `summary` shows it: `3/1/0`, `stage1/block0/conv1`;
  `""` for the outermost layer."""
  return "/".join(label for _, label in _PATH.get())


def index_path():
  """Where the params of the layer being initialised or applied sit in the model's params: `params[3][1][0]`
  is `(3, 1, 0)`."""
  return tuple(i for i, _ in _PATH.get() if i is not None)


def where(kind):
  """The layer of type `kind` being initialised or applied, for messages: `3/1/0 (Conv)`, or `Conv` outermost."""
  return f"{path()} ({kind})" if _PATH.get() else kind


@contextlib.contextmanager
def _entered(levels):
  token = _PATH.set(levels)
  try:
    yield
  finally:
    _PATH.reset(token)


def scope(index):
  """Name the layer initialised or applied inside after its place `index` in a container."""
  return _entered((*_PATH.get(), (index, str(index))))


def label(name):
  """Name the layer initialised or applied inside `name`: it replaces the index its container gave it, or adds a
  level where there is none to replace (outermost, or a name given to a named layer)."""
  levels = _PATH.get()
  if levels and levels[-1][0] is not None and levels[-1][1] == str(levels[-1][0]):
    return _entered((*levels[:-1], (levels[-1][0], name)))
  return _entered((*levels, (None, name)))


@contextlib.contextmanager
def capturing():
  """Collect `{path: (type, output)}` of every layer applied inside (the innermost where two share a path, as a
  `shape_dependent` layer and the layer it chose)."""
  outputs = {}
  token = _CAPTURE.set(outputs)
  try:
    yield outputs
  finally:
    _CAPTURE.reset(token)


@contextlib.contextmanager
def naming(name):
  """ValueErrors and TypeErrors raised inside name layer `name` by its path, once (the innermost layer does):
  a message's leading `"{name}: "` becomes `"{path} ({name}): "`; other messages get that in front."""
  try:
    yield
  except (ValueError, TypeError) as err:
    if err.args and isinstance(err.args[0], str) and not getattr(err, "funconv_layer", None):
      err.args = (f"{where(name)}: {err.args[0].removeprefix(f'{name}: ')}", *err.args[1:])
      err.funconv_layer = where(name)
    raise


def check_layer(layer, name, what="layer"):
  """Raise TypeError naming `name` and `what` unless `layer` is a `Layer` (has callable `init` and `apply`)."""
  if not (callable(getattr(layer, "init", None)) and callable(getattr(layer, "apply", None))):
    hint = (
      " (a constructor: call it, e.g. Conv(8, 3))"
      if callable(layer)
      else " (a stax layer? wrap it with funconv.from_stax)"
      if isinstance(layer, tuple)
      else ""
    )
    raise TypeError(f"{name}: {what} must be a funconv Layer (init, apply), got {layer!r}{hint}")
  return layer


def check_input_shape(input_shape, name):
  """`input_shape` checked: one example's shape (ints >= 0, no batch axis) as a tuple, or a list of them (the
  inputs of a fan-in) as a list."""
  if isinstance(input_shape, (list, tuple)) and any(isinstance(s, (list, tuple)) for s in input_shape):
    return [as_shape(s, f"input_shape[{i}]", name) for i, s in enumerate(input_shape)]
  return as_shape(input_shape, "input_shape", name)


def check_number(value, name, op, low=-math.inf, high=math.inf, open_low=False):
  """`value` as a finite float in `[low, high]` (`(low, high]` with `open_low`): TypeError (not a real number) or
  ValueError (outside, infinite or NaN) naming `op` (a layer or function), argument `name` and the value."""
  try:
    number = None if isinstance(value, (bool, str, bytes)) else float(value)
  except (TypeError, ValueError):
    number = None
  if number is None:
    raise TypeError(f"{op}: {name} must be a number, got {value!r} of type {type(value).__name__}")
  if not math.isfinite(number) or not (low < number if open_low else low <= number) or not number <= high:
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if high == math.inf else ']'}"
    raise ValueError(f"{op}: {name} must be a finite number in {interval}, got {value!r}")
  return number


def check_dtypes(op, **dtypes):
  """Raise TypeError naming layer `op` unless each of `dtypes` (`dtype=`, `param_dtype=`) is None or a floating
  or complex dtype: an integer layer would silently truncate."""
  for name, dtype in dtypes.items():
    try:
      inexact = dtype is None or jnp.issubdtype(jnp.dtype(dtype), jnp.inexact)
    except TypeError:
      inexact = False
    if not inexact:
      raise TypeError(f"{op}: {name} must be a floating-point or complex dtype, got {name}={dtype!r}")


def features(input_shape, op):
  """The size of the last axis of `input_shape` (a layer's features or channels); ValueError naming `op` if
  there is none."""
  if len(input_shape) < 1:
    raise ValueError(f"{op}: input_shape must end in a feature (channel) axis, got {tuple(input_shape)}")
  return input_shape[-1]


def check_entries(name, what, value, n):
  """Raise ValueError naming container `name` unless `value` (its params, state or inputs) is a tuple or list
  of `n` entries, one per child layer."""
  if not isinstance(value, (tuple, list)) or len(value) != n:
    got = f"{len(value)}" if isinstance(value, (tuple, list)) else f"a {type(value).__name__}"
    raise ValueError(f"{name}: {what} must be a tuple of {n} entries, one per layer, got {got} (from another model?)")


def _shapes(tree):
  return jax.tree.map(jnp.shape, tree)


def _mismatch(what, got, expected):
  """None where `got` has the structure and leaf shapes of `expected` (lists and tuples alike), else
  `(structural, message)`."""
  paths = lambda tree: {jax.tree_util.keystr(p): jnp.shape(a) for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]}
  want, have = paths(expected), paths(got)
  if want.keys() != have.keys():
    return True, f"{what} have the structure {_shapes(got)}, but init makes {_shapes(expected)}"
  wrong = [f"{what}{p} has shape {have[p]}, init makes {want[p]}" for p in want if want[p] != have[p]]
  return (False, "; ".join(wrong)) if wrong else None


def _input_shape(x):
  return [tuple(jnp.shape(a)) for a in x] if isinstance(x, (list, tuple)) else tuple(jnp.shape(x))


def scoped(name, init, apply):
  """`Layer(init, apply)` of type `name` whose errors name it by its path (`naming`) and whose output `capture`
  sees under its path: every layer is one; containers are no more (they check their own arguments and leave
  the rest to their children)."""

  def scoped_init(key, input_shape):
    with naming(name):
      return init(key, input_shape)

  def scoped_apply(params, state, x, *, key=None, train=False):
    with naming(name):
      y, state = apply(params, state, x, key=key, train=train)
    outputs = _CAPTURE.get()
    if outputs is not None and _PATH.get():
      outputs.setdefault(path(), (name, y))
    return y, state

  return Layer(scoped_init, scoped_apply)


def checked(name, init, apply):
  """A `scoped` layer whose `init` checks `input_shape` and whose `apply` checks `params` and `state` against what
  `init` makes for `x`'s shape: at trace time, from `init` under `jax.eval_shape`, once per input shape.

  A structure that differs (params of another model) raises before the layer runs, where it would fail as an
  IndexError or run another model. Shapes that differ raise after the layer's own checks, with what those say
  (they name `x`'s and the kernel's shapes), or alone where the layer would have run with a silent broadcast.
  """
  expected = {}

  def checked_init(key, input_shape):
    return init(key, check_input_shape(input_shape, name))

  def checked_apply(params, state, x, *, key=None, train=False):
    shape = _input_shape(x)
    if repr(shape) not in expected:
      expected[repr(shape)] = jax.eval_shape(lambda: checked_init(jax.random.key(0), shape)[1:])
    found = [m for m in map(_mismatch, ("params", "state"), (params, state), expected[repr(shape)]) if m]
    note = (
      (
        f"{name}: " + "; ".join(message for _, message in found) + f" for an input of shape {shape}, one "
        "example (params of another model, or a batch not mapped by batched?)"
      )
      if found
      else None
    )
    if any(structural for structural, _ in found):
      raise ValueError(note)
    try:
      out = apply(params, state, x, key=key, train=train)
    except (ValueError, TypeError) as err:
      if note:
        raise ValueError(f"{note}; {err}") from err
      raise
    if note:
      raise ValueError(note)
    return out

  return scoped(name, checked_init, checked_apply)


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
  `FanOut` and a fan-in); None once the spatial layout is gone (after Flatten or a global pool);
  or `UNKNOWN` after a layer whose geometry funconv cannot see (a `from_stax` layer).
  """

  def __init__(self, input_shape):
    self.rows = []
    rank = len(input_shape) - 1 if isinstance(input_shape, tuple) else 0
    self.field = ((1, 1, 0.0),) * rank if rank > 0 else None


@contextlib.contextmanager
def recording(input_shape):
  rec = Recorder(input_shape)
  token = _RECORDER.set(rec)
  try:
    yield rec
  finally:
    _RECORDER.reset(token)


def _param_count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def layer(name, init, apply, *, macs=None, window=None, flattens=False, param_names=(), state_names=()):
  """A leaf layer of type `name` from its `init` and `apply`: how every funconv layer is made, and a custom one too.

  Wrapping the pair (rather than `Layer(init, apply)` directly) makes the layer a full citizen: `summary` counts
  its params, MACs and output shape in a row of its own, `receptive_field` follows its geometry, `param_names`
  names its entries, `capture` records its output, and wrong params or state, or a bad input, raise errors that
  name the layer's path in the model.

  Args:
    name: the layer's type in `summary` rows and error messages (`"Conv"`).
    init: `init(key, input_shape) -> (output_shape, params, state)` for one example.
    apply: `apply(params, state, x, *, key=None, train=False) -> (y, state)` for one example.
    macs: `macs(input_shape, output_shape)`, the multiply-accumulates of one example (default: 0).
    window: `window(input_shape)`, per spatial axis `(kernel, stride, dilation, low_pad)` for
      `receptive_field`; None (default) for a layer that keeps each position's field (elementwise layers).
    flattens: True for a layer that mixes every position (`Flatten`, global pools): fields become the input.
    param_names: names of the entries of its params tuple (`("W", "b")`) for `param_names`; others are named
      by their index.
    state_names: likewise for its state tuple.

  Returns:
    A `Layer`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> def init(key, input_shape):
    ...   return input_shape, (jnp.ones(input_shape[-1]),), ()
    >>> def apply(params, state, x, *, key=None, train=False):
    ...   return x * params[0], state
    >>> Scale = fc.layer("Scale", init, apply, param_names=("gamma",),
    ...                  macs=lambda input_shape, output_shape: jnp.size(jnp.zeros(output_shape)))
    >>> net = fc.serial(fc.Dense(4), Scale)
    >>> info = fc.summary(net, (3,), print_fn=None)
    >>> [(row["type"], row["params"]) for row in info["rows"]]
    [('Dense', 16), ('Scale', 4)]
    >>> names, _ = fc.param_names(net, (3,))
    >>> names[1]
    ('1/gamma',)
  """

  def recorded_init(key, input_shape):
    output_shape, params, state = init(key, input_shape)
    rec = _RECORDER.get()
    if rec is not None:
      if flattens:
        rec.field = None
      elif window is UNKNOWN and isinstance(rec.field, tuple):
        rec.field = UNKNOWN
      elif window is not None and isinstance(rec.field, tuple):
        rec.field = tuple(
          (jump * s, size + (k - 1) * d * jump, start + ((k - 1) * d / 2 - lo) * jump)
          for (jump, size, start), (k, s, d, lo) in zip(rec.field, window(input_shape))
        )
      row_name = path() or name
      if any(row["name"] == row_name for row in rec.rows):
        raise ValueError(f"two layers have the path {row_name!r}: give them different names")
      rec.rows.append(
        dict(
          name=row_name,
          type=name,
          index=index_path(),
          param_names=param_names,
          state_names=state_names,
          input_shape=tuple(input_shape),
          output_shape=tuple(output_shape),
          params=_param_count(params),
          state=_param_count(state),
          macs=macs(input_shape, output_shape) if macs else 0,
          field=rec.field if isinstance(rec.field, tuple) or rec.field is UNKNOWN else None,
        )
      )
    return output_shape, params, state

  return checked(name, recorded_init, apply)


def split_key(key, n):
  """`n` independent keys from `key` (a list of Nones for None)."""
  return [None] * n if key is None else list(jax.random.split(key, n))


def fan_out_field(n):
  rec = _RECORDER.get()
  if rec is not None:
    rec.field = [rec.field] * n


def merge_fields():
  """After a fan-in: the widest of the incoming receptive fields (the whole input if one branch sees it, unknown
  if one branch's is)."""
  rec = _RECORDER.get()
  if rec is not None and isinstance(rec.field, list):
    fields = rec.field
    rec.field = (
      max(fields, key=lambda f: [size for _, size, _ in f])
      if all(isinstance(f, tuple) for f in fields)
      else None
      if None in fields
      else UNKNOWN
    )


def child_fields():
  """The incoming per-branch fields of a `parallel`, and a setter for each child in turn."""
  rec = _RECORDER.get()
  return rec, (list(rec.field) if rec is not None and isinstance(rec.field, list) else None)
