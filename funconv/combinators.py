"""Combinators: layers made of layers, as in `jax.example_libraries.stax`.

A combinator's params and state are tuples of its children's; keys are split so that no two
children share one. Each child runs in the scope of its index (or its name), so that `summary` rows,
error messages and `capture` name it by its path (`3/1/0`, or with `named` layers `stage1/block0/conv1`); a
container checks that its params, state and inputs hold one entry per child, and each child checks its own.

Branching: `FanOut(n)` copies one input into a list of `n`, `parallel` applies one layer to each entry
of a list, and a fan-in (`FanInSum`, `FanInConcat(axis)`) merges the list back into one array.

`FanInSum` is a layer value (a `Layer` namedtuple, which cannot carry a docstring of its own), used without
calling it, and documented here: it sums a non-empty list of same-shaped inputs, `[(*shape), ...] ->
(*shape)`, in their result dtype; no params or state. Its `init` raises ValueError where the input shape is
not a non-empty list (no `FanOut` before it) or the shapes differ.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.FanInSum.init(None, [(2,), (2,)])[0]
  (2,)
  >>> fc.FanInSum.apply((), (), [jnp.ones(2), jnp.ones(2)])[0].tolist()
  [2.0, 2.0]
  >>> net = fc.serial(fc.FanOut(2), fc.parallel(fc.Dense(5), fc.Identity), fc.FanInSum)   # x W + b + x
  >>> net.init(jax.random.key(0), (5,))[0]
  (5,)
"""

import jax.numpy as jnp

from funconv.layers.base import (
  Layer,
  check_entries,
  check_layer,
  checked,
  child_fields,
  fan_out_field,
  label,
  merge_fields,
  scope,
  scoped,
  split_key,
)
from funconv.layers.core import Identity
from funconv.ops.shapes import positive_int


def _check_layers(name, layers):
  for i, child in enumerate(layers):
    check_layer(child, name, f"layers[{i}]")
  names = [name_of(child) for child in layers if name_of(child) is not None]
  if len(set(names)) < len(names):
    twice = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(
      f"{name}: two of its layers are named {twice[0]!r}; names must differ within a container, got names {names}"
    )


def named(name, layer):
  """`layer` named `name`: its path in `summary`, error messages, `capture` and `param_names` is `name` instead of
  its index in its container (`stage1/block0/conv1` rather than `3/0/1`). Params, state, shapes and outputs are
  `layer`'s own.

  Args:
    name: a non-empty string without `/` and not a number (those are the indices of unnamed layers); layers
      of one container must have different names (the container raises ValueError otherwise).
    layer: a `Layer`.

  Returns:
    A `Layer` computing what `layer` computes.

  Raises:
    ValueError: `name` is empty, contains `/`, is all digits, or is not a string.
    TypeError: `layer` is not a `Layer`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.named("conv", fc.Conv(8, (3, 3))), fc.named("act", fc.Relu), fc.Flatten,
    ...                 fc.named("head", fc.Dense(10)))
    >>> [row["name"] for row in fc.summary(net, (28, 28, 1), print_fn=None)["rows"]]
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
  """Layers in sequence: the output of each is the input of the next.

  Args:
    *layers: `Layer`s, applied in order; none is a valid model too (the identity).
    **named_layers: more layers, after the positional ones, each `named` by its keyword:
      `serial(conv=Conv(8, 3), act=Relu)`.

  Returns:
    A `Layer` from the first layer's input shape to the last one's output shape. Params and state
    are tuples with one entry per layer, in order (`params[i]` is layer `i`'s); `key` is split into
    one key per layer.

  Raises:
    TypeError: an argument is not a `Layer` (a constructor not called, a stax layer).
    ValueError: two layers with the same name; in `apply`, params or state without one entry per
      layer.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(8, (3, 3)), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> out_shape, len(params), [p.shape for p in params[3]]
    ((10,), 4, [(5408, 10), (10,)])
    >>> y, state = net.apply(params, state, jnp.ones((28, 28, 1)))
    >>> y.shape
    (10,)
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
  """Applies the `i`-th layer to the `i`-th input of a list (from `FanOut`); returns a list.

  Args:
    *layers: `Layer`s, one per input.
    **named_layers: more layers, after the positional ones, `named` by their keywords, as in `serial`.

  Returns:
    A `Layer` from a list of `n` inputs `[x_0, ..., x_{n-1}]` (input shape a list of `n` shapes) to the
    list `[layer_0(x_0), ...]`. Params and state are tuples with one entry per layer.

  Raises:
    TypeError: an argument is not a `Layer`.
    ValueError: two layers with the same name; in `init` or `apply`, an input (shape), params or state
      that is not a list or tuple of one entry per layer.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.FanOut(2), fc.parallel(fc.Dense(3), fc.Identity), fc.FanInConcat())
    >>> out_shape, params, state = net.init(jax.random.key(0), (5,))
    >>> out_shape                                                 # 3 features from Dense, 5 passed through
    (8,)
    >>> ys, _ = fc.parallel(fc.Relu, fc.Tanh).apply(((), ()), ((), ()), [jnp.array([-1.0]), jnp.array([0.0])])
    >>> [y.tolist() for y in ys]
    [[0.0], [0.0]]
  """
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
  """Copies its input into a list of `num` (for `parallel`): `(*shape) -> [(*shape)] * num`.

  Args:
    num: the number of copies, an int >= 1.

  Returns:
    A `Layer` without params or state.

  Raises:
    TypeError: `num` is not an int.
    ValueError: `num < 1`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.FanOut(3).init(None, (4,))[0]
    [(4,), (4,), (4,)]
    >>> len(fc.FanOut(3).apply((), (), jnp.ones(4))[0])
    3
  """
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
      raise ValueError(
        f"{name}: the input must be a list of inputs (FanOut, then parallel), got input_shape {input_shape}"
      )
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
"""Sums a list (or tuple) of same-shaped inputs: `[(*shape), ...] -> (*shape)`; ends a `parallel`.

A layer value (used without calling it). No params or state; a ValueError at `init` for inputs of different
shapes. `residual(main, shortcut)` is `serial(FanOut(2), parallel(main, shortcut), FanInSum)`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.FanInSum.init(None, [(4,), (4,)])[0]
  (4,)
  >>> fc.FanInSum.apply((), (), [jnp.ones(2), jnp.full(2, 2.0)])[0].tolist()
  [3.0, 3.0]
"""


def FanInConcat(axis=-1):
  """Concatenates a list of inputs along per-example `axis` (default -1: channels).

  The inputs' shapes must agree except along `axis`: `[(*a, n_0, *b), (*a, n_1, *b), ...] ->
  (*a, n_0 + n_1 + ..., *b)`; the output has the inputs' result dtype. `axis` counts in one example
  (no batch axis), negative from the end.

  Args:
    axis: an int in `[-rank, rank)` for inputs of rank `rank` (default -1).

  Returns:
    A `Layer` without params or state whose input is a list (from `parallel`).

  Raises:
    TypeError: `axis` is not an int.
    ValueError: in `init`, an input shape that is not a non-empty list, `axis` out of range, or shapes that
      differ elsewhere than along `axis`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.FanInConcat().init(None, [(8, 8, 16), (8, 8, 32)])[0]
    (8, 8, 48)
    >>> fc.FanInConcat(0).apply((), (), [jnp.ones((1, 2)), jnp.zeros((2, 2))])[0].shape
    (3, 2)
  """
  if isinstance(axis, bool) or not isinstance(axis, int):
    raise TypeError(f"FanInConcat: axis must be an int, got {axis!r}")

  def combine(shapes):
    rank = len(shapes[0])
    if not -rank <= axis < rank:
      raise ValueError(f"FanInConcat: axis={axis} is out of range for inputs of rank {rank}, got shapes {shapes}")
    ax = axis % rank
    if any(
      len(s) != rank or tuple(s[:ax]) + tuple(s[ax + 1 :]) != tuple(shapes[0][:ax]) + tuple(shapes[0][ax + 1 :])
      for s in shapes
    ):
      raise ValueError(f"FanInConcat: inputs must agree except along axis {axis}, got {shapes}")
    return (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1 :])

  def apply(params, state, xs, *, key=None, train=False):
    return jnp.concatenate(xs, axis), state

  return _fan_in("FanInConcat", combine, apply)


def shape_dependent(make_layer):
  """A layer chosen from the input shape: `make_layer(input_shape)` returns the layer to use.

  `init` calls `make_layer(input_shape)` and `apply` calls `make_layer(x.shape)` (at trace time), so the
  function must return the same layer structure for the same shape; the params and state are the chosen
  layer's own. Useful where a shape decides the model, e.g. a projection shortcut only where the channels
  change.

  Args:
    make_layer: a function of one example's shape (a tuple of ints) returning a `Layer`.

  Returns:
    A `Layer` with the chosen layer's shapes, params and state.

  Raises:
    TypeError: `make_layer` is not callable; (in `init` or `apply`) it returns something that is not a
      `Layer`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> to4 = fc.shape_dependent(lambda shape: fc.Identity if shape[-1] == 4 else fc.Dense(4))
    >>> to4.init(jax.random.key(0), (4,))[:2]
    ((4,), ())
    >>> out_shape, (W, b), state = to4.init(jax.random.key(0), (6,))
    >>> out_shape, W.shape
    ((4,), (6, 4))
  """
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
  """`main(x) + shortcut(x)`: the ResNet block's skip connection (projection via `shortcut`).

  It is `serial(FanOut(2), parallel(main, shortcut), FanInSum)` with its parts named: `split`,
  `branches/main`, `branches/shortcut`, `add`.

  Args:
    main: the residual branch, a `Layer`.
    shortcut: the skip branch (default `Identity`); it must give `main`'s output shape (a strided 1x1
      `Conv` where `main` changes the shape).

  Returns:
    A `Layer` `(*shape) -> main's output shape`; params `((), (main's, shortcut's), ())`, state alike.

  Raises:
    TypeError: `main` or `shortcut` is not a `Layer`.
    ValueError: in `init`, `main` and `shortcut` give different output shapes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> block = fc.residual(fc.serial(fc.Conv(8, 3, padding="SAME"), fc.Relu))
    >>> out_shape, params, state = block.init(jax.random.key(0), (8, 8, 8))
    >>> out_shape, len(params), len(params[1])
    ((8, 8, 8), 3, 2)
    >>> [row["name"] for row in fc.summary(block, (8, 8, 8), print_fn=None)["rows"]]
    ['branches/main/0', 'branches/main/1', 'branches/shortcut']
  """
  check_layer(main, "residual", "main")
  check_layer(shortcut, "residual", "shortcut")
  return serial(split=FanOut(2), branches=parallel(main=main, shortcut=shortcut), add=FanInSum)
