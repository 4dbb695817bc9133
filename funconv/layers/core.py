"""Dense, reshaping, activation and dropout layers."""
import math

import jax
import jax.numpy as jnp
from jax.nn import initializers

from funconv.layers.base import check_dtypes, check_number, features, layer, promote, trailing
from funconv.ops.shapes import positive_int


def Dense(out_dim, W_init=None, b_init=None, *, use_bias=True, dtype=None, param_dtype=jnp.float32):
  """Fully connected: `(..., in_dim) -> (..., out_dim)`, `y = x @ W + b`.

  Params `(W, b)` with `W` `(in_dim, out_dim)` (just `(W,)` without bias). Defaults: `W_init =
  glorot_normal()` (as stax), `b_init = zeros`. `init` creates the params in `param_dtype`;
  `apply` casts `x` and the params to `dtype` and computes and returns in it, `dtype=None`
  meaning their result type (`jnp.result_type(x, W, b)`, as Flax).

  Example:
    >>> shape, (W, b), state = Dense(10).init(jax.random.key(0), (784,))    # shape == (10,)
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
# Flatten: Flattens each example to a vector: `(*shape) -> (prod(shape),)`.


def Reshape(shape):
  """Reshapes each example to `shape` (one entry may be -1)."""
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
# Identity: Returns its input.


def elementwise(fn, name=None, **fn_kwargs):
  """A layer applying `fn(x, **fn_kwargs)` elementwise (shape-preserving, no params).

  Example:
    >>> Swish = elementwise(jax.nn.swish)
  """
  if not callable(fn):
    raise TypeError(f"elementwise: fn must be a function of an array, got {fn!r}")

  def apply(params, state, x, *, key=None, train=False):
    return fn(x, **fn_kwargs), state

  return layer(name or getattr(fn, "__name__", "elementwise"), _identity_init, apply)


Relu = elementwise(jax.nn.relu, "Relu")
LeakyRelu = elementwise(jax.nn.leaky_relu, "LeakyRelu")   # negative slope 0.01
Elu = elementwise(jax.nn.elu, "Elu")
Selu = elementwise(jax.nn.selu, "Selu")
Gelu = elementwise(jax.nn.gelu, "Gelu")
Sigmoid = elementwise(jax.nn.sigmoid, "Sigmoid")
Tanh = elementwise(jnp.tanh, "Tanh")
Softplus = elementwise(jax.nn.softplus, "Softplus")
Softmax = elementwise(jax.nn.softmax, "Softmax", axis=-1)
LogSoftmax = elementwise(jax.nn.log_softmax, "LogSoftmax", axis=-1)


def Dropout(rate):
  """Zeroes each element with probability `rate` in training and scales the rest by `1 / (1 - rate)`.

  `rate` is the **drop** probability, in [0, 1] (stax's `Dropout` takes the keep probability;
  this does not; `rate=1` drops everything, as Flax's), and training is the `train=` argument
  of `apply`, not a constructor mode. With `train=True` a `key` is required; under `batched`
  each example gets its own. With `train=False` the layer is the identity.

  Example:
    >>> y, _ = Dropout(0.5).apply((), (), x, key=jax.random.key(0), train=True)
  """
  rate = check_number(rate, "rate, the drop probability,", "Dropout", 0.0, 1.0)

  def apply(params, state, x, *, key=None, train=False):
    if not train or rate == 0.0:
      return x, state
    if key is None:
      raise ValueError("Dropout: train=True needs a PRNG key: apply(..., key=key, train=True)")
    if rate == 1.0:   # no mask: x / 0 would make the gradient NaN
      return jnp.zeros_like(x), state
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype), state

  return layer("Dropout", _identity_init, apply)
