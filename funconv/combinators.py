"""Combinators: layers made of layers, as in `jax.example_libraries.stax`.

A combinator's params and state are tuples of its children's; keys are split so that no two
children share one. Each child runs in the scope of its index (or its name), so that `summary` rows,
error messages and `capture` name it by its path (`3/1/0`, or with `named` layers `stage1/block0/conv1`); a
container checks that its params, state and inputs hold one entry per child, and each child checks its own.
"""
import jax.numpy as jnp

from funconv.layers.base import (Layer, check_entries, check_layer, checked, child_fields, fan_out_field, label,
                                 merge_fields, scope, scoped, split_key)
from funconv.layers.core import Identity
from funconv.ops.shapes import positive_int


def _check_layers(name, layers):
  for i, child in enumerate(layers):
    check_layer(child, name, f"layers[{i}]")
  names = [name_of(child) for child in layers if name_of(child) is not None]
  if len(set(names)) < len(names):
    twice = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f"{name}: two of its layers are named {twice[0]!r}; names must differ within a container, "
                     f"got names {names}")


def named(name, layer):
  """`layer` named `name`: its path in `summary`, error messages, `capture` and `param_names` is `name` instead of
  its index in its container (`stage1/block0/conv1` rather than `3/0/1`). Params, state and outputs are
  `layer`'s own.

  `name` is a non-empty string without `/` and not a number (those are the indices of unnamed layers); layers
  of one container must have different names.

  Example:
    >>> net = serial(named("conv", Conv(8, (3, 3))), named("act", Relu), Flatten, named("head", Dense(10)))
    >>> [row["name"] for row in summary(net, (28, 28, 1), print_fn=None)["rows"]]
    ['conv', 'act', '2', 'head']
  """
  if not isinstance(name, str) or not name or "/" in name or name.isdigit():
    raise ValueError(f"named: name must be a non-empty string without '/' that is not a number, got {name!r}")
  check_layer(layer, "named", "layer")

  def init(key, input_shape):
    with label(name):
      return layer.init(key, input_shape)

  def apply(params, state, x, *, key=None, train=False):
    with label(name):
      return layer.apply(params, state, x, key=key, train=train)

  init.funconv_name = name
  return Layer(init, apply)


def name_of(layer):
  """The name `named` gave `layer`, or None."""
  return getattr(layer.init, "funconv_name", None)


def _all_layers(name, layers, named_layers):
  """`layers`, then `named_layers` (`{name: layer}`) each `named`, checked."""
  for key, child in named_layers.items():
    check_layer(child, name, f"layer {key}")
  layers = (*layers, *(named(key, child) for key, child in named_layers.items()))
  _check_layers(name, layers)
  return layers


def serial(*layers, **named_layers):
  """Layers in sequence: the output of each is the input of the next. Keyword arguments are layers too, after
  the positional ones, `named` by their keywords: `serial(conv=Conv(8, 3), act=Relu)`.

  Example:
    >>> net = serial(Conv(8, (3, 3)), Relu, Flatten, Dense(10))
    >>> out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))   # (10,)
  """
  layers = _all_layers("serial", layers, named_layers)

  def init(key, input_shape):
    params, states = [], []
    for i, (child, k) in enumerate(zip(layers, split_key(key, len(layers)))):
      with scope(i):
        input_shape, p, s = child.init(k, input_shape)
      params.append(p)
      states.append(s)
    return input_shape, tuple(params), tuple(states)

  def apply(params, state, x, *, key=None, train=False):
    for what, value in (("params", params), ("state", state)):
      check_entries("serial", what, value, len(layers))
    new_states = []
    for i, (child, p, s, k) in enumerate(zip(layers, params, state, split_key(key, len(layers)))):
      with scope(i):
        x, s = child.apply(p, s, x, key=k, train=train)
      new_states.append(s)
    return x, tuple(new_states)

  return scoped("serial", init, apply)


def parallel(*layers, **named_layers):
  """Applies the `i`-th layer to the `i`-th input of a list (from `FanOut`); returns a list. Keyword arguments are
  layers after the positional ones, `named` by their keywords, as in `serial`."""
  layers = _all_layers("parallel", layers, named_layers)

  def init(key, input_shape):
    check_entries("parallel", "input_shape", input_shape, len(layers))
    rec, fields = child_fields()
    shapes, params, states = [], [], []
    for i, (child, shape, k) in enumerate(zip(layers, input_shape, split_key(key, len(layers)))):
      if fields is not None:
        rec.field = fields[i]
      with scope(i):
        shape, p, s = child.init(k, shape)
      if fields is not None:
        fields[i] = rec.field
      shapes.append(shape)
      params.append(p)
      states.append(s)
    if fields is not None:
      rec.field = fields
    return shapes, tuple(params), tuple(states)

  def apply(params, state, xs, *, key=None, train=False):
    for what, value in (("params", params), ("state", state), ("x", xs)):
      check_entries("parallel", what, value, len(layers))
    outs, new_states = [], []
    for i, (child, p, s, x, k) in enumerate(zip(layers, params, state, xs, split_key(key, len(layers)))):
      with scope(i):
        y, s = child.apply(p, s, x, key=k, train=train)
      outs.append(y)
      new_states.append(s)
    return outs, tuple(new_states)

  return scoped("parallel", init, apply)


def FanOut(num):
  """Copies its input into a list of `num` (for `parallel`)."""
  positive_int(num, "num", "FanOut")

  def init(key, input_shape):
    fan_out_field(num)
    return [input_shape] * num, (), ()

  def apply(params, state, x, *, key=None, train=False):
    return [x] * num, state

  return checked("FanOut", init, apply)


def _fan_in(name, combine_shapes, apply):
  """A fan-in layer: its input is a list (from `parallel`), its shape rule `combine_shapes(shapes)`, which
  `apply` checks too."""
  def init(key, input_shape):
    if not isinstance(input_shape, list) or not input_shape:
      raise ValueError(f"{name}: the input must be a list of inputs (FanOut, then parallel), got input_shape "
                       f"{input_shape}")
    merge_fields()
    return combine_shapes(input_shape), (), ()
  return checked(name, init, apply)


def _sum_shapes(shapes):
  if any(tuple(s) != tuple(shapes[0]) for s in shapes):
    raise ValueError(f"FanInSum: every input must have the same shape, got {shapes}")
  return shapes[0]


def _sum_apply(params, state, xs, *, key=None, train=False):
  return sum(xs[1:], xs[0]), state


FanInSum = _fan_in("FanInSum", _sum_shapes, _sum_apply)
# FanInSum: Sums a list of same-shaped inputs.


def FanInConcat(axis=-1):
  """Concatenates a list of inputs along per-example `axis` (default: channels)."""
  if isinstance(axis, bool) or not isinstance(axis, int):
    raise TypeError(f"FanInConcat: axis must be an int, got {axis!r}")

  def combine(shapes):
    rank = len(shapes[0])
    if not -rank <= axis < rank:
      raise ValueError(f"FanInConcat: axis={axis} is out of range for inputs of rank {rank}, got shapes {shapes}")
    ax = axis % rank
    if any(len(s) != rank or tuple(s[:ax]) + tuple(s[ax + 1:]) != tuple(shapes[0][:ax]) + tuple(shapes[0][ax + 1:])
           for s in shapes):
      raise ValueError(f"FanInConcat: inputs must agree except along axis {axis}, got {shapes}")
    return (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1:])

  def apply(params, state, xs, *, key=None, train=False):
    return jnp.concatenate(xs, axis), state

  return _fan_in("FanInConcat", combine, apply)


def shape_dependent(make_layer):
  """A layer chosen from the input shape: `make_layer(input_shape)` returns the layer to use."""
  if not callable(make_layer):
    raise TypeError(f"shape_dependent: make_layer must be a function of the input shape, got {make_layer!r}")

  def make(shape):
    return check_layer(make_layer(shape), "shape_dependent", f"make_layer({shape})")

  def init(key, input_shape):
    return make(input_shape).init(key, input_shape)

  def apply(params, state, x, *, key=None, train=False):
    return make(x.shape).apply(params, state, x, key=key, train=train)

  return scoped("shape_dependent", init, apply)


def residual(main, shortcut=Identity):
  """`main(x) + shortcut(x)`: the ResNet block's skip connection (projection via `shortcut`). It is
  `serial(FanOut(2), parallel(main, shortcut), FanInSum)` with its parts named: `split`, `branches/main`,
  `branches/shortcut`, `add`; params `((), (main's, shortcut's), ())`."""
  check_layer(main, "residual", "main")
  check_layer(shortcut, "residual", "shortcut")
  return serial(split=FanOut(2), branches=parallel(main=main, shortcut=shortcut), add=FanInSum)
