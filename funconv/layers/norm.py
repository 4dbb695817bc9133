"""Normalisation layers: BatchNorm (with running statistics in `state`), LayerNorm, GroupNorm."""
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from funconv.layers.base import layer, trailing


def _batch_mean(v, axis_name):
  """Mean of per-example `v` over the named batch (and device) axes."""
  try:
    return lax.pmean(v, axis_name)
  except NameError as err:
    raise ValueError(f"BatchNorm: train=True reduces over the axis named {axis_name!r}, which is not bound: "
                     "apply the model through funconv.batched(apply, axis_name=...) or jax.vmap(..., "
                     f"axis_name=...) so that there is a batch to take statistics over ({err})") from None


def BatchNorm(axis_name="batch", momentum=0.9, epsilon=1e-5, center=True, scale=True,
              beta_init=initializers.zeros, gamma_init=initializers.ones):
  """Batch normalisation over the examples (named axis `axis_name`) and spatial positions.

  Params `(beta, gamma)`, each `(C,)` (None where `center` / `scale` is off); state
  `(mean, var)`, the running averages, starting at `(0, 1)`. With `train=True` the layer
  normalises with the batch statistics (`lax.pmean` over `axis_name`, so it needs `batched`
  or a `vmap`/`pmap` with that axis name; a tuple of names also reduces over devices) and
  returns the state updated as `momentum * old + (1 - momentum) * batch` (biased variance, as
  Flax). With `train=False` it uses the running averages and returns the state unchanged.

  Example:
    >>> net = serial(Conv(8, (3, 3)), BatchNorm(), Relu)
    >>> y, state = batched(net.apply)(params, state, images, train=True)
  """
  def init(key, input_shape):
    c = input_shape[-1]
    params = (beta_init(key, (c,)) if center else None, gamma_init(key, (c,)) if scale else None)
    return input_shape, params, (jnp.zeros((c,)), jnp.ones((c,)))

  def apply(params, state, x, *, key=None, train=False):
    if train:
      spatial = tuple(range(x.ndim - 1))
      mean = _batch_mean(jnp.mean(x, axis=spatial), axis_name)
      var = _batch_mean(jnp.mean(jnp.square(x - trailing(mean, x)), axis=spatial), axis_name)
      state = tuple(momentum * old + (1 - momentum) * new for old, new in zip(state, (mean, var)))
    else:
      mean, var = state
    return _affine((x - trailing(mean, x)) * trailing(lax.rsqrt(var + epsilon), x), params), state

  return layer("BatchNorm", init, apply)


def _affine_params(key, c, center, scale):
  return (initializers.zeros(key, (c,)) if center else None, initializers.ones(key, (c,)) if scale else None)


def _affine(y, params):
  beta, gamma = params
  y = y if gamma is None else y * trailing(gamma, y)
  return y if beta is None else y + trailing(beta, y)


def LayerNorm(epsilon=1e-5, center=True, scale=True):
  """Normalises each position over its channels (the last axis), as Flax's and PyTorch's
  `LayerNorm(C)`; params `(beta, gamma)`, each `(C,)`. The same in training and evaluation.

  Example:
    >>> y, _ = LayerNorm().apply(*LayerNorm().init(key, (16, 64))[1:], x)   # x: (16, 64)
  """
  def init(key, input_shape):
    return input_shape, _affine_params(key, input_shape[-1], center, scale), ()

  def apply(params, state, x, *, key=None, train=False):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return _affine((x - mean) * lax.rsqrt(var + epsilon), params), state

  return layer("LayerNorm", init, apply)


def GroupNorm(num_groups=32, epsilon=1e-5, center=True, scale=True):
  """Normalises each example over its spatial positions and each group of `C // num_groups`
  channels (Wu and He 2018); params `(beta, gamma)`, each `(C,)`. Needs no batch statistics.

  Example:
    >>> net = serial(Conv(64, (3, 3)), GroupNorm(num_groups=32), Relu)
  """
  def init(key, input_shape):
    c = input_shape[-1]
    if c % num_groups:
      raise ValueError(f"GroupNorm: num_groups={num_groups} must divide the channels ({c}, input_shape "
                       f"{tuple(input_shape)})")
    return input_shape, _affine_params(key, c, center, scale), ()

  def apply(params, state, x, *, key=None, train=False):
    grouped = x.reshape(*x.shape[:-1], num_groups, x.shape[-1] // num_groups)
    axes = (*range(x.ndim - 1), x.ndim)
    mean = jnp.mean(grouped, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(grouped - mean), axis=axes, keepdims=True)
    y = ((grouped - mean) * lax.rsqrt(var + epsilon)).reshape(x.shape)
    return _affine(y, params), state

  return layer("GroupNorm", init, apply)
