"""Combinators: layers made of layers, as in `jax.example_libraries.stax`.

A combinator's params and state are tuples of its children's; keys are split so that no two
children share one.
"""
import jax.numpy as jnp

from funconv.layers.base import Layer, child_fields, fan_out_field, merge_fields, scope, split_key
from funconv.layers.core import Identity


def serial(*layers):
  """Layers in sequence: the output of each is the input of the next.

  Example:
    >>> net = serial(Conv(8, (3, 3)), Relu, Flatten, Dense(10))
    >>> out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))   # (10,)
  """
  def init(key, input_shape):
    params, states = [], []
    for i, (child, k) in enumerate(zip(layers, split_key(key, len(layers)))):
      with scope(str(i)):
        input_shape, p, s = child.init(k, input_shape)
      params.append(p)
      states.append(s)
    return input_shape, tuple(params), tuple(states)

  def apply(params, state, x, *, key=None, train=False):
    new_states = []
    for child, p, s, k in zip(layers, params, state, split_key(key, len(layers))):
      x, s = child.apply(p, s, x, key=k, train=train)
      new_states.append(s)
    return x, tuple(new_states)

  return Layer(init, apply)


def parallel(*layers):
  """Applies the `i`-th layer to the `i`-th input of a list (from `FanOut`); returns a list."""
  def init(key, input_shape):
    if len(input_shape) != len(layers):
      raise ValueError(f"parallel: {len(layers)} layers need a list of {len(layers)} input shapes, got {input_shape!r}")
    rec, fields = child_fields()
    shapes, params, states = [], [], []
    for i, (child, shape, k) in enumerate(zip(layers, input_shape, split_key(key, len(layers)))):
      if fields is not None:
        rec.field = fields[i]
      with scope(str(i)):
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
    outs, new_states = [], []
    for child, p, s, x, k in zip(layers, params, state, xs, split_key(key, len(layers))):
      y, s = child.apply(p, s, x, key=k, train=train)
      outs.append(y)
      new_states.append(s)
    return outs, tuple(new_states)

  return Layer(init, apply)


def FanOut(num):
  """Copies its input into a list of `num` (for `parallel`)."""
  def init(key, input_shape):
    fan_out_field(num)
    return [input_shape] * num, (), ()

  def apply(params, state, x, *, key=None, train=False):
    return [x] * num, state

  return Layer(init, apply)


def _fan_in_init(combine_shapes):
  def init(key, input_shape):
    merge_fields()
    return combine_shapes(list(input_shape)), (), ()
  return init


def _sum_shapes(shapes):
  if any(tuple(s) != tuple(shapes[0]) for s in shapes):
    raise ValueError(f"FanInSum: every input must have the same shape, got {shapes}")
  return shapes[0]


def _sum_apply(params, state, xs, *, key=None, train=False):
  return sum(xs[1:], xs[0]), state


FanInSum = Layer(_fan_in_init(_sum_shapes), _sum_apply)
# FanInSum: Sums a list of same-shaped inputs.


def FanInConcat(axis=-1):
  """Concatenates a list of inputs along per-example `axis` (default: channels)."""
  def combine(shapes):
    rank = len(shapes[0])
    ax = axis % rank
    if any(len(s) != rank or tuple(s[:ax]) + tuple(s[ax + 1:]) != tuple(shapes[0][:ax]) + tuple(shapes[0][ax + 1:])
           for s in shapes):
      raise ValueError(f"FanInConcat: inputs must agree except along axis {axis}, got {shapes}")
    return (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1:])

  def apply(params, state, xs, *, key=None, train=False):
    return jnp.concatenate(xs, axis), state

  return Layer(_fan_in_init(combine), apply)


def shape_dependent(make_layer):
  """A layer chosen from the input shape: `make_layer(input_shape)` returns the layer to use."""
  def init(key, input_shape):
    return make_layer(input_shape).init(key, input_shape)

  def apply(params, state, x, *, key=None, train=False):
    return make_layer(x.shape).apply(params, state, x, key=key, train=train)

  return Layer(init, apply)


def residual(main, shortcut=Identity):
  """`main(x) + shortcut(x)`: the ResNet block's skip connection (projection via `shortcut`)."""
  return serial(FanOut(2), parallel(main, shortcut), FanInSum)
