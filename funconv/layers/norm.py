"""Normalisation layers: BatchNorm (with running statistics in `state`), LayerNorm, GroupNorm."""
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from funconv.layers.base import check_dtypes, check_number, features, layer, promote, trailing
from funconv.ops.shapes import positive_int


def _batch_mean(v, axis_name):
  """Mean of per-example `v` over the named batch (and device) axes: one axis at a time, since a
  vmapped axis and a `shard_map` axis cannot be reduced together (equal shards: the mean of means)."""
  try:
    for name in (tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)):
      v = lax.pmean(v, name)
    return v
  except NameError as err:
    raise ValueError(f"BatchNorm: train=True reduces over the axis named {axis_name!r}, which is not bound: "
                     "apply the model through funconv.batched(apply, axis_name=...) or jax.vmap(..., "
                     f"axis_name=...) so that there is a batch to take statistics over ({err})") from None


def _wide(x):
  """`x` in float32 at least: summed in bfloat16 (as `lax.pmean` over a vmapped axis sums), the
  batch mean of values near 1000 is off by tens, and their variance by several times."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def BatchNorm(axis_name="batch", momentum=0.9, epsilon=1e-5, center=True, scale=True,
              beta_init=initializers.zeros, gamma_init=initializers.ones, *, dtype=None, param_dtype=jnp.float32):
  """Batch normalisation over the examples (named axis `axis_name`) and spatial positions.

  Params `(beta, gamma)`, each `(C,)` (None where `center` / `scale` is off); state
  `(mean, var)`, the running averages, starting at `(0, 1)`. With `train=True` the layer
  normalises with the batch statistics (`lax.pmean` over `axis_name`, so it needs `batched`
  or a `vmap`/`pmap` with that axis name; a tuple of names also reduces over devices) and
  returns the state updated as `momentum * old + (1 - momentum) * batch` (biased variance, as
  Flax). With `train=False` it uses the running averages and returns the state unchanged.

  `init` creates the params in `param_dtype`; the state is float32 whatever the dtypes (Flax's
  `batch_stats` are too). `apply` casts `x` and the params to `dtype` (None: their result type,
  never the state's) and returns `y` in it, so a bfloat16 network returns bfloat16 in evaluation
  as in training. The batch statistics, their running averages and the normalisation itself are
  computed in float32 (float64 for a float64 input), whatever `dtype`.

  Example:
    >>> net = serial(Conv(8, (3, 3)), BatchNorm(), Relu)
    >>> y, state = batched(net.apply)(params, state, images, train=True)
  """
  check_number(momentum, "momentum", "BatchNorm", 0.0, 1.0)
  check_number(epsilon, "epsilon", "BatchNorm", 0.0)
  check_dtypes("BatchNorm", dtype=dtype, param_dtype=param_dtype)

  def init(key, input_shape):
    c = features(input_shape, "BatchNorm")
    params = (beta_init(key, (c,), param_dtype) if center else None,
              gamma_init(key, (c,), param_dtype) if scale else None)
    return input_shape, params, (jnp.zeros((c,), jnp.float32), jnp.ones((c,), jnp.float32))

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("BatchNorm", dtype, x, *params)
    wide = _wide(x)
    if train:
      spatial = tuple(range(x.ndim - 1))
      mean = _batch_mean(jnp.mean(wide, axis=spatial), axis_name)
      var = _batch_mean(jnp.mean(jnp.square(wide - trailing(mean, x)), axis=spatial), axis_name)
      state = tuple((momentum * old + (1 - momentum) * new).astype(old.dtype) for old, new in zip(state, (mean, var)))
    else:
      mean, var = state
    y = (wide - trailing(mean, x)) * trailing(lax.rsqrt(var + epsilon), x)
    return _affine(y, params).astype(x.dtype), state

  return layer("BatchNorm", init, apply, param_names=("beta", "gamma"), state_names=("mean", "var"))


def _affine_params(key, c, center, scale, param_dtype):
  return (initializers.zeros(key, (c,), param_dtype) if center else None,
          initializers.ones(key, (c,), param_dtype) if scale else None)


def _affine(y, params):
  beta, gamma = params
  y = y if gamma is None else y * trailing(gamma, y)
  return y if beta is None else y + trailing(beta, y)


def LayerNorm(epsilon=1e-5, center=True, scale=True, *, dtype=None, param_dtype=jnp.float32):
  """Normalises each position over its channels (the last axis), as Flax's and PyTorch's
  `LayerNorm(C)`; params `(beta, gamma)`, each `(C,)`. The same in training and evaluation.
  `init` creates the params in `param_dtype`; `apply` casts `x` and the params to `dtype`
  (None: their result type) and returns `y` in it, computing the statistics and the
  normalisation in float32 (or wider).

  Example:
    >>> y, _ = LayerNorm().apply(*LayerNorm().init(key, (16, 64))[1:], x)   # x: (16, 64)
  """
  check_number(epsilon, "epsilon", "LayerNorm", 0.0)
  check_dtypes("LayerNorm", dtype=dtype, param_dtype=param_dtype)

  def init(key, input_shape):
    return input_shape, _affine_params(key, features(input_shape, "LayerNorm"), center, scale, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("LayerNorm", dtype, x, *params)
    wide = _wide(x)
    mean = jnp.mean(wide, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(wide - mean), axis=-1, keepdims=True)
    return _affine((wide - mean) * lax.rsqrt(var + epsilon), params).astype(x.dtype), state

  return layer("LayerNorm", init, apply, param_names=("beta", "gamma"))


def GroupNorm(num_groups=32, epsilon=1e-5, center=True, scale=True, *, dtype=None, param_dtype=jnp.float32):
  """Normalises each example over its spatial positions and each group of `C // num_groups`
  channels (Wu and He 2018); params `(beta, gamma)`, each `(C,)`. Needs no batch statistics.
  `dtype` and `param_dtype` as in `LayerNorm`.

  Example:
    >>> net = serial(Conv(64, (3, 3)), GroupNorm(num_groups=32), Relu)
  """
  positive_int(num_groups, "num_groups", "GroupNorm")
  check_number(epsilon, "epsilon", "GroupNorm", 0.0)
  check_dtypes("GroupNorm", dtype=dtype, param_dtype=param_dtype)

  def init(key, input_shape):
    c = features(input_shape, "GroupNorm")
    if c % num_groups:
      raise ValueError(f"GroupNorm: num_groups={num_groups} must divide the channels ({c}, input_shape "
                       f"{tuple(input_shape)})")
    return input_shape, _affine_params(key, c, center, scale, param_dtype), ()

  def apply(params, state, x, *, key=None, train=False):
    x, *params = promote("GroupNorm", dtype, x, *params)
    grouped = _wide(x).reshape(*x.shape[:-1], num_groups, x.shape[-1] // num_groups)
    axes = (*range(x.ndim - 1), x.ndim)
    mean = jnp.mean(grouped, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(grouped - mean), axis=axes, keepdims=True)
    y = ((grouped - mean) * lax.rsqrt(var + epsilon)).reshape(x.shape)
    return _affine(y, params).astype(x.dtype), state

  return layer("GroupNorm", init, apply, param_names=("beta", "gamma"))
