"""Batches from per-example layers: `batched` and `per_example_grads`."""
import jax

from funconv.layers.base import lifted


def batched(apply, axis_name="batch"):
  """Map a per-example `apply` over the leading axis of `x`, as `jax.vmap` with `axis_name` would.

  The returned function has `apply`'s signature, `(params, state, x, *, key=None, train=False)
  -> (y, state)`, with a leading batch axis on `x` and `y`. `key`, if given, is split into one
  key per example. The returned state is unbatched (`BatchNorm` reduces its statistics over
  `axis_name`).

  funconv's own layers are handed the whole batch at once rather than vmapped, so that each
  convolution runs as one batched call of `funconv.ops` (a vmap of the per-example convolution
  measured 1.7x slower forward+backward, experiments/bench_batched.py); results are the
  same as the vmap's. Any other layer is vmapped with `axis_name`.

  Example:
    >>> logits, state = batched(net.apply)(params, state, images, key=key, train=True)
  """
  def run(params, state, x, *, key=None, train=False):
    size = jax.tree.leaves(x)[0].shape[0]
    keys = None if key is None else jax.random.split(key, size)
    if getattr(apply, "batch_polymorphic", False):
      with lifted(axis_name, size):
        return apply(params, state, x, key=keys, train=train)
    return jax.vmap(lambda x, k: apply(params, state, x, key=k, train=train), in_axes=(0, None if key is None else 0),
                    out_axes=(0, None), axis_name=axis_name)(x, keys)

  return run


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
