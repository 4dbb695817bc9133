"""Normalisation layers: BatchNorm (with running statistics in `state`), LayerNorm, GroupNorm.

Each normalises one example `(*spatial, C)` (shape-preserving) and then scales by `gamma` and shifts
by `beta`, per channel. BatchNorm needs the other examples of the batch in training: apply it through
`funconv.batched` (or a `jax.vmap` with its `axis_name`).
"""

import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from funconv.layers.base import check_dtypes, check_number, features, layer, promote, trailing
from funconv.ops.shapes import positive_int


def _batch_mean(v, axis_name):
  """Mean of per-example `v` over the named batch (and device) axes: one axis at a time, since a
  vmapped axis and a `shard_map` axis cannot be reduced together (equal shards: the mean of means)."""
  try:
    for name in tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,):
      v = lax.pmean(v, name)
    return v
  except NameError as err:
    raise ValueError(
      f"BatchNorm: train=True reduces over the axis named {axis_name!r}, which is not bound: "
      "apply the model through funconv.batched(apply, axis_name=...) or jax.vmap(..., "
      f"axis_name=...) so that there is a batch to take statistics over ({err})"
    ) from None


def _wide(x):
  """`x` in float32 at least: summed in bfloat16 (as `lax.pmean` over a vmapped axis sums), the
  batch mean of values near 1000 is off by tens, and their variance by several times."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def BatchNorm(
  axis_name="batch",
  momentum=0.9,
  epsilon=1e-5,
  center=True,
  scale=True,
  beta_init=initializers.zeros,
  gamma_init=initializers.ones,
  *,
  dtype=None,
  param_dtype=jnp.float32,
):
  """Batch normalisation over the examples (named axis `axis_name`) and spatial positions, per channel.

  `(*spatial, C) -> (*spatial, C)` for one example: `y = (x - mean) / sqrt(var + epsilon) * gamma
  + beta`. With `train=True` the layer normalises with the batch statistics (`lax.pmean` over
  `axis_name`, so it needs `batched` or a `vmap`/`pmap` with that axis name; a tuple of names also
  reduces over devices) and returns the state updated as `momentum * old + (1 - momentum) *
  batch` (biased variance, as Flax). With `train=False` it uses the running averages and returns
  the state unchanged.

  `init` creates the params in `param_dtype`; the state is float32 whatever the dtypes (Flax's
  `batch_stats` are too). `apply` casts `x` and the params to `dtype` (None: their result type,
  never the state's) and returns `y` in it, so a bfloat16 network returns bfloat16 in evaluation
  as in training. The batch statistics, their running averages and the normalisation itself are
  computed in float32 (float64 for a float64 input), whatever `dtype`.

  Args:
    axis_name: the name (or tuple of names) of the batch axis to reduce over in training
      (default `"batch"`, `batched`'s default).
    momentum: weight of the old running averages, in [0, 1] (default 0.9).
    epsilon: added to the variance, >= 0 (default 1e-5).
    center: learn the shift `beta` (default True); False: params entry None, no shift.
    scale: learn the scale `gamma` (default True); False: params entry None, no scale.
    beta_init: initializer `(key, shape, dtype) -> array` of `beta` (default zeros).
    gamma_init: initializer of `gamma` (default ones).
    dtype: the computation and output dtype; default None: the result type of `x` and the params.
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer`. Params `(beta, gamma)`, each `(C,)` (None where `center` / `scale` is off); state
    `(mean, var)`, each `(C,)` float32, the running averages, starting at `(0, 1)`.

  Raises:
    TypeError: `momentum` or `epsilon` is not a number; `dtype` or `param_dtype` is not floating
      or complex; in `apply`, an integer or boolean `x`.
    ValueError: `momentum` outside [0, 1] or `epsilon < 0`; in `init`, an input shape `()`; in
      `apply`, `train=True` where `axis_name` is not bound (not under `batched` or `vmap`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(8, 3), fc.BatchNorm(), fc.Relu)
    >>> shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> [s.shape for s in state[1]]                                  # BatchNorm's (mean, var)
    [(8,), (8,)]
    >>> images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    >>> y, state = fc.batched(net.apply)(params, state, images, train=True)
    >>> y.shape
    (4, 26, 26, 8)
    >>> bn = fc.BatchNorm()
    >>> _, p, s = bn.init(None, (3,))
    >>> y, s = fc.batched(bn.apply)(p, s, jnp.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]), train=True)
    >>> jnp.round(y, 3).tolist()
    [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
    >>> [round(v, 3) for v in s[0].tolist()]                         # 0.9 * 0 + 0.1 * the batch mean (2, 3, 4)
    [0.2, 0.3, 0.4]
  """
  check_number(momentum, "momentum", "BatchNorm", 0.0, 1.0)
  check_number(epsilon, "epsilon", "BatchNorm", 0.0)
  check_dtypes("BatchNorm", dtype=dtype, param_dtype=param_dtype)

  def init(key, input_shape):
    c = features(input_shape, "BatchNorm")
    params = (
      beta_init(key, (c,), param_dtype) if center else None,
      gamma_init(key, (c,), param_dtype) if scale else None,
    )
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
  return (
    initializers.zeros(key, (c,), param_dtype) if center else None,
    initializers.ones(key, (c,), param_dtype) if scale else None,
  )


def _affine(y, params):
  beta, gamma = params
  y = y if gamma is None else y * trailing(gamma, y)
  return y if beta is None else y + trailing(beta, y)


def LayerNorm(epsilon=1e-5, center=True, scale=True, *, dtype=None, param_dtype=jnp.float32):
  """Normalises each position over its channels (the last axis), as Flax's and PyTorch's `LayerNorm(C)`.

  `(*spatial, C) -> (*spatial, C)`: `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, the
  mean and (biased) variance over the last axis of each position. The same in training and
  evaluation; no state. `apply` casts `x` and the params to `dtype` (None: their result type) and
  returns `y` in it, computing the statistics and the normalisation in float32 (or wider).

  Args:
    epsilon: added to the variance, >= 0 (default 1e-5).
    center: learn the shift `beta`, initially 0 (default True); False: params entry None.
    scale: learn the scale `gamma`, initially 1 (default True); False: params entry None.
    dtype: the computation and output dtype; default None: the result type of `x` and the params.
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer`. Params `(beta, gamma)`, each `(C,)`; no state.

  Raises:
    TypeError: `epsilon` is not a number; `dtype` or `param_dtype` is not floating or complex; in
      `apply`, an integer or boolean `x`.
    ValueError: `epsilon < 0`; in `init`, an input shape `()`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> ln = fc.LayerNorm()
    >>> _, params, state = ln.init(None, (16, 64))              # 16 positions, 64 channels
    >>> [p.shape for p in params]
    [(64,), (64,)]
    >>> _, params, state = ln.init(None, (3,))
    >>> y, _ = ln.apply(params, state, jnp.array([1.0, 2.0, 3.0]))
    >>> [round(v, 3) for v in y.tolist()]
    [-1.225, 0.0, 1.225]
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
  channels (Wu and He 2018); then scales and shifts per channel. Needs no batch statistics.

  `(*spatial, C) -> (*spatial, C)`. The same in training and evaluation; no state. `dtype` and
  `param_dtype` as in `LayerNorm`; statistics in float32 (or wider).

  Args:
    num_groups: the number of channel groups, an int >= 1 dividing `C` (default 32).
    epsilon: added to the variance, >= 0 (default 1e-5).
    center: learn the shift `beta`, initially 0 (default True); False: params entry None.
    scale: learn the scale `gamma`, initially 1 (default True); False: params entry None.
    dtype: the computation and output dtype; default None: the result type of `x` and the params.
    param_dtype: the params' dtype (default float32).

  Returns:
    A `Layer`. Params `(beta, gamma)`, each `(C,)`; no state.

  Raises:
    TypeError: `num_groups` is not an int; `epsilon` is not a number; `dtype` or `param_dtype` is
      not floating or complex; in `apply`, an integer or boolean `x`.
    ValueError: `num_groups < 1` or `epsilon < 0`; in `init`, an input shape `()` or `C` not
      divisible by `num_groups`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(64, 3), fc.GroupNorm(num_groups=32), fc.Relu)
    >>> net.init(jax.random.key(0), (16, 16, 3))[0]
    (14, 14, 64)
    >>> gn = fc.GroupNorm(num_groups=2)
    >>> _, params, state = gn.init(None, (4, 4, 8))
    >>> y, _ = gn.apply(params, state, jnp.arange(128.0).reshape(4, 4, 8))
    >>> first = y[..., :4]                                      # the first group: 4 channels
    >>> abs(float(first.mean())) < 1e-5, round(float(first.std()), 3)
    (True, 1.0)
  """
  positive_int(num_groups, "num_groups", "GroupNorm")
  check_number(epsilon, "epsilon", "GroupNorm", 0.0)
  check_dtypes("GroupNorm", dtype=dtype, param_dtype=param_dtype)

  def init(key, input_shape):
    c = features(input_shape, "GroupNorm")
    if c % num_groups:
      raise ValueError(
        f"GroupNorm: num_groups={num_groups} must divide the channels ({c}, input_shape {tuple(input_shape)})"
      )
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
