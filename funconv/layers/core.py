"""Dense, reshaping, activation and dropout layers.

Each is a `funconv.Layer` for one example (`batched` maps it over a batch). Some are factories
(`Dense(10)`, `Reshape(...)`, `Dropout(0.5)`, `elementwise(fn)`); the others are ready-made layer
values, used without calling them (`serial(Conv(8, 3), Relu, Flatten)`): `Flatten`, `Identity` and the
activations `Relu`, `LeakyRelu`, `Elu`, `Selu`, `Gelu`, `Sigmoid`, `Tanh`, `Softplus`, `Softmax`, `LogSoftmax`,
each documented by the docstring under its definition (`help(funconv.Relu)` shows `Layer`'s: a namedtuple
instance has no docstring of its own). None has params or state, and none depends on `key` or `train`.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.Flatten.init(None, (7, 7, 64))[0]
  (3136,)
  >>> x = jnp.array([-1.0, 0.0, 2.0])
  >>> [round(v, 3) for v in fc.LeakyRelu.apply((), (), x)[0].tolist()]
  [-0.01, 0.0, 2.0]
  >>> [round(v, 3) for v in fc.Softmax.apply((), (), x)[0].tolist()]
  [0.042, 0.114, 0.844]
  >>> y, state = fc.serial(fc.Relu, fc.Identity).apply(((), ()), ((), ()), x)
  >>> y.tolist(), state
  ([0.0, 0.0, 2.0], ((), ()))
"""

import math

import jax
import jax.numpy as jnp
from jax.nn import initializers

from funconv.layers.base import check_dtypes, check_number, features, layer, promote, trailing
from funconv.ops.shapes import positive_int


def Dense(out_dim, W_init=None, b_init=None, *, use_bias=True, dtype=None, param_dtype=jnp.float32):
  """Fully connected: `(*leading, in_dim) -> (*leading, out_dim)`, `y = x @ W + b`.

  `in_dim` is the last axis of the input shape given to `init`; any axes before it (none for a
  vector example) are kept, each position transformed alike.

  Args:
    out_dim: the output features, an int >= 1.
    W_init: initializer `(key, shape, dtype) -> array` of `W`; default `glorot_normal()` (as stax).
    b_init: initializer of `b`; default `jax.nn.initializers.zeros`.
    use_bias: add `b` (default True); without it the params are `(W,)`.
    dtype: the dtype `apply` casts `x` and the params to, computes and returns in; default None:
      their result type (`jnp.result_type(x, W, b)`, as Flax).
    param_dtype: the dtype `init` creates the params in (default float32).

  Returns:
    A `Layer`. Params `(W, b)`, `W` `(in_dim, out_dim)`, `b` `(out_dim,)`; no state.

  Raises:
    TypeError: `out_dim` is not an int; `dtype` or `param_dtype` is not floating or complex; in
      `apply`, an integer or boolean `x`.
    ValueError: `out_dim < 1`; in `init`, an input shape `()`; in `apply`, `x.shape[-1] != in_dim`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> shape, (W, b), state = fc.Dense(10).init(jax.random.key(0), (784,))
    >>> shape, W.shape, b.shape, W.dtype
    ((10,), (784, 10), (10,), dtype('float32'))
    >>> y, _ = fc.Dense(10).apply((W, b), state, jnp.ones((5, 784)))      # leading axes are kept
    >>> y.shape
    (5, 10)
  """
  positive_int(out_dim, "out_dim", "Dense")
  check_dtypes("Dense", dtype=dtype, param_dtype=param_dtype)
  W_init = W_init or initializers.glorot_normal()
  b_init = b_init or initializers.zeros

  def init(key, input_shape):
    k1, k2 = jax.random.split(key)
    W = W_init(k1, (features(input_shape, "Dense"), out_dim), param_dtype)
    params = (W, b_init(k2, (out_dim,), param_dtype)) if use_bias else (W,)
    return (*input_shape[:-1], out_dim), params, ()

  def apply(params, state, x, *, key=None, train=False):
    if x.shape[-1] != params[0].shape[0]:
      raise ValueError(f"Dense: input has {x.shape[-1]} features (x.shape={x.shape}) but W is {params[0].shape}")
    x, *params = promote("Dense", dtype, x, *params)
    y = x @ params[0]
    return (y + trailing(params[1], y) if use_bias else y), state

  return layer("Dense", init, apply, param_names=("W", "b"), macs=lambda i, o: math.prod(i) * out_dim)


def _flatten_init(key, input_shape):
  return (math.prod(input_shape),), (), ()


def _flatten_apply(params, state, x, *, key=None, train=False):
  return x.reshape(-1), state


Flatten = layer("Flatten", _flatten_init, _flatten_apply, flattens=True)
"""Each example to a vector: `(*shape) -> (prod(shape),)`, row-major (C) order; a scalar becomes `(1,)`.

A layer value (used without calling it). No params or state. It ends the spatial layout: `receptive_field`
reports the whole input after it.

Examples:
  >>> import funconv as fc
  >>> fc.Flatten.init(None, (7, 7, 64))[0]
  (3136,)
"""


def Reshape(shape):
  """Reshapes each example to `shape`: `(*in_shape) -> shape`, in row-major (C) order.

  Args:
    shape: a tuple (or list) of ints >= 1, at most one of them -1 (the size that makes the
      element counts equal).

  Returns:
    A `Layer` without params or state. Like `Flatten`, it ends the spatial layout for
    `receptive_field`.

  Raises:
    TypeError: an entry of `shape` is not an int.
    ValueError: `shape` is not a tuple or list, has two -1 entries or an entry below 1 (other than
      -1); in `init`, an input shape with a different number of elements.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.Reshape((-1, 4)).init(None, (2, 2, 4))[0]
    (4, 4)
    >>> y, _ = fc.Reshape((2, 3)).apply((), (), jnp.arange(6.0))
    >>> y.tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
  """
  if not isinstance(shape, (tuple, list)) or [d == -1 for d in shape].count(True) > 1:
    raise ValueError(f"Reshape: shape must be a tuple of sizes, at most one of them -1, got {shape!r}")
  shape = tuple(-1 if d == -1 else positive_int(d, f"shape[{i}]", "Reshape") for i, d in enumerate(shape))

  def init(key, input_shape):
    size = math.prod(input_shape)
    known = math.prod(d for d in shape if d != -1)
    out = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(out) != size:
      raise ValueError(f"Reshape: cannot reshape input_shape {tuple(input_shape)} to {tuple(shape)}")
    return out, (), ()

  def apply(params, state, x, *, key=None, train=False):
    return x.reshape(shape), state

  return layer("Reshape", init, apply, flattens=True)


def _identity_init(key, input_shape):
  return input_shape, (), ()


def _identity_apply(params, state, x, *, key=None, train=False):
  return x, state


Identity = layer("Identity", _identity_init, _identity_apply)
"""Returns its input: `(*shape) -> (*shape)`. A layer value; `residual`'s default shortcut. No params or state.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> fc.Identity.apply((), (), jnp.ones(3))[0].tolist()
  [1.0, 1.0, 1.0]
"""


def elementwise(fn, name=None, **fn_kwargs):
  """A layer applying `fn(x, **fn_kwargs)`: shape-preserving, no params or state.

  The activation layers `Relu`, `LeakyRelu`, `Elu`, `Selu`, `Gelu`, `Sigmoid`, `Tanh`, `Softplus`,
  `Softmax` and `LogSoftmax` are made with it (see `funconv.layers.core` for what each computes).

  Args:
    fn: a function of one array returning an array of the same shape (not checked: a function
      that changes the shape makes `init`'s output shape wrong).
    name: the layer's type in `summary` and error messages; default `fn.__name__`.
    **fn_kwargs: keyword arguments passed to `fn` on every call.

  Returns:
    A `Layer`: `(*shape) -> (*shape)`, `y = fn(x, **fn_kwargs)`, ignoring `key` and `train`.

  Raises:
    TypeError: `fn` is not callable.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> Swish = fc.elementwise(jax.nn.swish)
    >>> y, _ = Swish.apply((), (), jnp.array([0.0, 1.0]))
    >>> [round(v, 3) for v in y.tolist()]
    [0.0, 0.731]
    >>> LeakyRelu2 = fc.elementwise(jax.nn.leaky_relu, "LeakyRelu2", negative_slope=0.2)
    >>> [round(v, 3) for v in LeakyRelu2.apply((), (), jnp.array([-1.0, 3.0]))[0].tolist()]
    [-0.2, 3.0]
  """
  if not callable(fn):
    raise TypeError(f"elementwise: fn must be a function of an array, got {fn!r}")

  def apply(params, state, x, *, key=None, train=False):
    return fn(x, **fn_kwargs), state

  return layer(name or getattr(fn, "__name__", "elementwise"), _identity_init, apply)


Relu = elementwise(jax.nn.relu, "Relu")
"""`max(x, 0)` elementwise (`jax.nn.relu`): `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Relu)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Relu.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [0.0, 0.0, 2.0]
"""
LeakyRelu = elementwise(jax.nn.leaky_relu, "LeakyRelu")
"""`x` where `x >= 0`, else `0.01 x` (`jax.nn.leaky_relu`, negative slope 0.01): `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), LeakyRelu)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.LeakyRelu.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-0.01, 0.0, 2.0]
"""
Elu = elementwise(jax.nn.elu, "Elu")
"""`x` where `x > 0`, else `exp(x) - 1` (`jax.nn.elu`, alpha 1): `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Elu)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Elu.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-0.632, 0.0, 2.0]
"""
Selu = elementwise(jax.nn.selu, "Selu")
"""`1.0507 x` where `x > 0`, else `1.0507 * 1.6733 (exp(x) - 1)` (`jax.nn.selu`):
`(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Selu)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Selu.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-1.111, 0.0, 2.101]
"""
Gelu = elementwise(jax.nn.gelu, "Gelu")
"""`x Phi(x)`, in `jax.nn.gelu`'s default tanh approximation: `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Gelu)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Gelu.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-0.159, 0.0, 1.955]
"""
Sigmoid = elementwise(jax.nn.sigmoid, "Sigmoid")
"""`1 / (1 + exp(-x))` elementwise (`jax.nn.sigmoid`): `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Sigmoid)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Sigmoid.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [0.269, 0.5, 0.881]
"""
Tanh = elementwise(jnp.tanh, "Tanh")
"""`tanh(x)` elementwise: `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Tanh)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Tanh.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-0.762, 0.0, 0.964]
"""
Softplus = elementwise(jax.nn.softplus, "Softplus")
"""`log(1 + exp(x))` elementwise (`jax.nn.softplus`), a smooth ReLU: `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Softplus)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Softplus.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [0.313, 0.693, 2.127]
"""
Softmax = elementwise(jax.nn.softmax, "Softmax", axis=-1)
"""`exp(x) / sum(exp(x))` over the last axis (`jax.nn.softmax`): each position's features become
probabilities: `(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), Softmax)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.Softmax.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [0.042, 0.114, 0.844]
"""
LogSoftmax = elementwise(jax.nn.log_softmax, "LogSoftmax", axis=-1)
"""`x - logsumexp(x)` over the last axis (`jax.nn.log_softmax`): log-probabilities, computed stably:
`(*shape) -> (*shape)`, in `x`'s dtype.

A layer value (used without calling it, as in `serial(Conv(8, 3), LogSoftmax)`), made with `elementwise`; no params or
state; ignores `key` and `train`.

Examples:
  >>> import jax.numpy as jnp
  >>> import funconv as fc
  >>> y, state = fc.LogSoftmax.apply((), (), jnp.array([-1.0, 0.0, 2.0]))
  >>> [round(v, 3) for v in y.tolist()]
  [-3.17, -2.17, -0.17]
"""


def Dropout(rate):
  """Zeroes each element with probability `rate` in training and scales the rest by `1 / (1 - rate)`.

  `rate` is the **drop** probability (stax's `Dropout` takes the keep probability; this does
  not), and training is the `train=` argument of `apply`, not a constructor mode. With
  `train=True` a `key` is required; under `batched` each example gets its own. With
  `train=False` (or `rate=0`) the layer is the identity. Shape-preserving, `(*shape) -> (*shape)`,
  in `x`'s dtype; no params or state.

  Args:
    rate: the drop probability, a number in [0, 1]; `rate=1` drops everything (returns zeros, as
      Flax's).

  Returns:
    A `Layer`.

  Raises:
    TypeError: `rate` is not a number.
    ValueError: `rate` outside [0, 1] or NaN; in `apply`, `train=True` with `rate > 0` and no `key`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> x = jnp.ones(8)
    >>> y, _ = fc.Dropout(0.5).apply((), (), x, key=jax.random.key(0), train=True)
    >>> sorted(set(y.tolist()))                  # dropped elements are 0, kept ones x / (1 - rate)
    [0.0, 2.0]
    >>> fc.Dropout(0.5).apply((), (), x)[0].tolist() == x.tolist()       # evaluation: the identity
    True
  """
  rate = check_number(rate, "rate, the drop probability,", "Dropout", 0.0, 1.0)

  def apply(params, state, x, *, key=None, train=False):
    if not train or rate == 0.0:
      return x, state
    if key is None:
      raise ValueError("Dropout: train=True needs a PRNG key: apply(..., key=key, train=True)")
    if rate == 1.0:  # no mask: x / 0 would make the gradient NaN
      return jnp.zeros_like(x), state
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype), state

  return layer("Dropout", _identity_init, apply)
