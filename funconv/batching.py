"""Batches from per-example layers: `batched` and `per_example_grads`."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P


def batched(apply, axis_name="batch"):
  """`jax.vmap` of a per-example `apply` over the leading axis of `x`, with axis name `axis_name`.

  A plain `jax.vmap` is as fast: the convolution primitive's batching rule turns the vmapped
  per-example convolutions into one batched call.

  Args:
    apply: a layer's `apply(params, state, x, *, key=None, train=False) -> (y, state)`.
    axis_name: the name of the mapped axis (default `"batch"`): `BatchNorm` reduces its training
      statistics over it.

  Returns:
    A function with `apply`'s signature, `(params, state, x, *, key=None, train=False) ->
    (y, state)`, for `x` `(N, *example_shape)` (every array of a list `x` with a leading axis `N`)
    and `y` `(N, *output_shape)`. `params` and `state` are shared by the examples; `key`, if
    given, is split into `N` keys, one per example. The returned state is unbatched (the one the
    examples agree on: `BatchNorm` averages its statistics over `axis_name`).

  Raises:
    TypeError: `apply` is not callable.
    ValueError: (from the returned function) `x` has a scalar, with no batch axis.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Dropout(0.5), fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))          # one example's shape
    >>> images = jnp.ones((16, 8, 8, 1))
    >>> logits, state = fc.batched(net.apply)(params, state, images, key=jax.random.key(1), train=True)
    >>> logits.shape
    (16, 10)
  """
  if not callable(apply):
    raise TypeError(f"batched: apply must be a layer's apply function, got {apply!r}")

  def run(params, state, x, *, key=None, train=False):
    if any(jnp.ndim(leaf) == 0 for leaf in jax.tree.leaves(x)):
      raise ValueError(f"batched: x must have a leading batch axis, got shapes {jax.tree.map(jnp.shape, x)}")
    keys = None if key is None else _split_like(key, jax.tree.leaves(x)[0])
    return jax.vmap(
      lambda x, k: apply(params, state, x, key=k, train=train),
      in_axes=(0, None if key is None else 0),
      out_axes=(0, None),
      axis_name=axis_name,
    )(x, keys)

  return run


def _split_like(key, x):
  """One key per example of `x`, sharded as its batch axis (vmap needs them alike on an Explicit mesh)."""
  keys = jax.random.split(key, x.shape[0])
  sharding = jax.typeof(x).sharding
  batch_axes = sharding.spec[0]
  # The mesh of x's type, so that no mesh context is needed (a jit with shardings on an Explicit mesh has none).
  return keys if batch_axes is None else jax.sharding.reshard(keys, NamedSharding(sharding.mesh, P(batch_axes)))


def per_example_grads(loss_fn, argnums=0):
  """`jax.vmap(jax.grad(loss_fn))` over examples: one gradient per example, e.g. for DP-SGD.

  Args:
    loss_fn: `loss_fn(params, *example_args) -> loss`, the scalar loss of one example.
    argnums: which arguments to differentiate, as in `jax.grad` (default 0: `params`). The first
      argument is always shared, the others always mapped.

  Returns:
    A function `(params, *batch_args) -> grads`, every batch argument with a leading batch axis
    `N`; `grads` has the structure of the differentiated argument(s), each leaf with a leading
    axis `N`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> def loss(params, x, label):                                 # one example
    ...   logits, _ = net.apply(params, state, x)
    ...   return -jax.nn.log_softmax(logits)[label]
    >>> grads = fc.per_example_grads(loss)(params, jnp.ones((16, 8, 8, 1)), jnp.arange(16) % 10)
    >>> grads[0][0].shape, grads[3][0].shape                        # Conv's W, Dense's W: one per example
    ((16, 3, 3, 1, 4), (16, 144, 10))
  """
  grad_fn = jax.grad(loss_fn, argnums=argnums)

  def run(params, *batch_args):
    return jax.vmap(grad_fn, in_axes=(None, *(0,) * len(batch_args)))(params, *batch_args)

  return run
