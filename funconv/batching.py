"""Batches from per-example layers: `batched` and `per_example_grads`."""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def batched(apply, axis_name="batch"):
  """`jax.vmap` of a per-example `apply` over the leading axis of `x`, with axis name `axis_name`.

  The returned function has `apply`'s signature, `(params, state, x, *, key=None, train=False)
  -> (y, state)`, with a leading batch axis on `x` and `y`. `key`, if given, is split into one
  key per example. The returned state is unbatched (`BatchNorm` reduces its statistics over
  `axis_name`). A plain `jax.vmap` is as fast: the convolution primitive's batching rule turns
  the vmapped per-example convolutions into one batched call.

  Example:
    >>> logits, state = batched(net.apply)(params, state, images, key=key, train=True)
  """
  if not callable(apply):
    raise TypeError(f"batched: apply must be a layer's apply function, got {apply!r}")

  def run(params, state, x, *, key=None, train=False):
    if any(jnp.ndim(leaf) == 0 for leaf in jax.tree.leaves(x)):
      raise ValueError(f"batched: x must have a leading batch axis, got shapes {jax.tree.map(jnp.shape, x)}")
    keys = None if key is None else _split_like(key, jax.tree.leaves(x)[0])
    return jax.vmap(lambda x, k: apply(params, state, x, key=k, train=train), in_axes=(0, None if key is None else 0),
                    out_axes=(0, None), axis_name=axis_name)(x, keys)

  return run


def _split_like(key, x):
  """One key per example of `x`, sharded as its batch axis (vmap needs them alike on an Explicit mesh)."""
  keys = jax.random.split(key, x.shape[0])
  batch_axes = jax.typeof(x).sharding.spec[0]
  return keys if batch_axes is None else jax.sharding.reshard(keys, P(batch_axes))


def per_example_grads(loss_fn, argnums=0):
  """`jax.vmap(jax.grad(loss_fn))` over examples: one gradient per example, e.g. for DP-SGD.

  `loss_fn(params, *example_args)` computes the loss of one example; the returned function
  takes `(params, *batch_args)`, every batch argument with a leading batch axis, and returns
  gradients with a leading batch axis.

  Example:
    >>> grads = per_example_grads(lambda p, x, y: loss(p, x, y))(params, images, labels)
  """
  grad_fn = jax.grad(loss_fn, argnums=argnums)

  def run(params, *batch_args):
    return jax.vmap(grad_fn, in_axes=(None, *(0,) * len(batch_args)))(params, *batch_args)

  return run
