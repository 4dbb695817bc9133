"""Training and evaluation steps: jit-compiled, batched per-example losses, optax updates."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funconv.batching import batched
from funconv.data.augment import normalize as normalize_images
from funconv.train import distributed


class TrainState(NamedTuple):
  """Everything a training run carries from step to step, as one pytree (a namedtuple).

  `init_train_state` makes one; the `train_step` of `make_steps` maps one to the next;
  `save_checkpoint` and `load_checkpoint` write and read one.

  Attributes:
    step: the number of training steps taken, an int32 scalar array.
    params: the model's params, as its `init` makes them.
    state: the model's layer state (BatchNorm's running statistics; `()` entries elsewhere).
    opt_state: the optax optimizer's state for `params`.
    key: a typed PRNG key (`jax.random.key`), scalar, for dropout and augmentation; split every
      step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import funconv as fc
    >>> ts = fc.train.init_train_state(fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1), (8, 8, 1))
    >>> isinstance(ts, fc.train.TrainState), ts._fields
    (True, ('step', 'params', 'state', 'opt_state', 'key'))
    >>> int(ts.step), ts.step.dtype, jax.tree.map(jnp.shape, ts.params)
    (0, dtype('int32'), ((), ((64, 10), (10,))))
  """

  step: Any  # int32 scalar
  params: Any
  state: Any  # layer state (BatchNorm's running statistics)
  opt_state: Any
  key: Any  # PRNG key for dropout and augmentation; split every step


def init_train_state(model, optimizer, input_shape, seed=0):
  """A fresh `TrainState`: the model's params and state, the optimizer state, step 0 and the step key.

  `jax.random.key(seed)` is split in two: one key initialises the model, the other is the run's
  key (`TrainState.key`), split at every training step.

  Args:
    model: a funconv `Layer`.
    optimizer: an optax `GradientTransformation` (its `init` runs on the params).
    input_shape: one example's shape, no batch axis, e.g. `(32, 32, 3)`.
    seed: the PRNG seed, an int (default 0).

  Returns:
    A `TrainState` with `step` 0 (int32).

  Raises:
    TypeError, ValueError: as the model's `init` for `input_shape`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import funconv as fc
    >>> net = fc.serial(fc.Flatten, fc.Dense(10))
    >>> ts = fc.train.init_train_state(net, optax.adam(1e-3), (8, 8, 1), seed=0)
    >>> int(ts.step), ts.params[1][0].shape, ts.key.shape
    (0, (64, 10), ())
  """
  init_key, run_key = jax.random.split(jax.random.key(seed))
  _, params, state = model.init(init_key, tuple(input_shape))
  return TrainState(jnp.zeros((), jnp.int32), params, state, optimizer.init(params), run_key)


def cross_entropy(logits, labels, label_smoothing=0.0):
  """Per-example softmax cross-entropy with integer labels (optax), optionally label-smoothed.

  Args:
    logits: `(*batch, K)` unnormalised scores, floating.
    labels: `(*batch,)` integer class indices in `[0, K)`.
    label_smoothing: in [0, 1] (default 0.0: none); the target is `(1 - a) * one_hot(labels) + a / K`
      (`optax.smooth_labels`).

  Returns:
    `(*batch,)` losses, in `logits`' dtype: `-log softmax(logits)[label]` without smoothing.

  Examples:
    >>> import jax.numpy as jnp
    >>> import funconv as fc
    >>> losses = fc.train.cross_entropy(jnp.zeros((2, 10)), jnp.array([3, 7]))
    >>> losses.shape, losses.dtype, [round(float(v), 4) for v in losses]      # log(10)
    ((2,), dtype('float32'), [2.3026, 2.3026])
    >>> smoothed = fc.train.cross_entropy(jnp.array([[2.0, 0.0, 0.0]]), jnp.array([0]), label_smoothing=0.1)
    >>> round(float(smoothed[0]), 4)
    0.3729
  """
  if label_smoothing:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def top_k_correct(logits, labels, k=1):
  """Per example, 1.0 if the label is among the `k` largest logits, else 0.0 (top-k accuracy's terms).

  Ties are broken as `jax.lax.top_k` breaks them (the lower index first): the label's rank is the
  number of logits above its own plus those equal to it at a lower index. Counted elementwise, so
  that a batch split over devices is never gathered (XLA's partitioner gathers `top_k`'s operand).

  Args:
    logits: `(*batch, K)` scores.
    labels: `(*batch,)` integer class indices.
    k: an int with `1 <= k <= K` (default 1: plain accuracy).

  Returns:
    `(*batch,)` float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> import funconv as fc
    >>> logits, labels = jnp.array([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1]]), jnp.array([2, 0])
    >>> fc.train.top_k_correct(logits, labels).tolist(), fc.train.top_k_correct(logits, labels, k=2).tolist()
    ([0.0, 1.0], [1.0, 1.0])
  """
  own = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  before = jax.lax.broadcasted_iota(labels.dtype, logits.shape, logits.ndim - 1) < labels[..., None]
  rank = jnp.sum((logits > own) | ((logits == own) & before), axis=-1)
  return (rank < k).astype(jnp.float32)


def make_steps(model, optimizer, *, augment=None, normalize=None, label_smoothing=0.0, top_k=5, mesh=None):
  """`(train_step, eval_step)` for `model` (a funconv layer) and an optax `optimizer`, both jit-compiled.

  - `train_step(train_state, images, labels) -> (train_state, metrics)`: splits the state's key,
    augments (`augment(key, images)`, on the device), normalises (`normalize=(mean, std)`), runs
    the model through `funconv.batched` in training mode (dropout keys, BatchNorm's batch
    statistics and updated running statistics), takes the gradient of the mean per-example
    `cross_entropy` with `jax.grad`, applies optax's update and increments `step`. The input
    train state's buffers are donated: do not use it after the call.
  - `eval_step(train_state, images, labels) -> metrics`: normalises (no augmentation), runs the
    model in evaluation mode; no update, no label smoothing.

  `images` is `(N, *example_shape)` (e.g. `(N, H, W, C)` float), `labels` `(N,)` integer class
  indices. `metrics` is a dict of float32 scalars holding sums over the batch, `loss` (of the
  per-example cross-entropies), `correct` (top-1) and `top_k_correct`, and the number of examples
  `count`, so that epoch totals are exact whatever the batch sizes: divide by `count`. A negative
  label marks a padding example, left out of every sum (`fit` pads a last partial evaluation batch
  so that every batch splits over the devices). Each new batch shape compiles the steps again.

  With a `mesh` (`funconv.train.distributed.data_mesh`), both steps are compiled for it: the
  batch's leading axis sharded over `"data"`, the train state and the metrics replicated, so that
  XLA's partitioner splits the work by examples and sums the gradients, BatchNorm's statistics and
  the metrics over the devices; the results are those of one device on the same global batch.

  Args:
    model: a funconv `Layer` whose output is `(num_classes,)` logits per example.
    optimizer: an optax `GradientTransformation`.
    augment: None (default) or a function `(key, images) -> images` on a batch, e.g.
      `funconv.data.augmenter(crop_padding=4, flip=True)`.
    normalize: None (default) or `(mean, std)`, per channel, for `funconv.data.normalize`.
    label_smoothing: the training loss's label smoothing, in [0, 1] (default 0.0).
    top_k: the `k` of `top_k_correct`, capped at the number of classes (default 5).
    mesh: None (default: compiled for the arrays' own placement) or a mesh with a `"data"` axis.

  Returns:
    `(train_step, eval_step)`, jitted functions.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import funconv as fc
    >>> net, opt = fc.serial(fc.Flatten, fc.Dense(10)), optax.sgd(0.1)
    >>> train_step, eval_step = fc.train.make_steps(net, opt, top_k=3)
    >>> ts = fc.train.init_train_state(net, opt, (8, 8, 1))
    >>> images, labels = jnp.ones((16, 8, 8, 1)), jnp.arange(16) % 10
    >>> ts, metrics = train_step(ts, images, labels)
    >>> int(ts.step), sorted(metrics), float(metrics["count"])
    (1, ['correct', 'count', 'loss', 'top_k_correct'], 16.0)
    >>> metrics = eval_step(ts, images, labels)
    >>> mean_loss = float(metrics["loss"] / metrics["count"])
  """
  apply = batched(model.apply)

  def prepare(images):
    return images if normalize is None else normalize_images(images, *normalize)

  def metrics(logits, labels, losses):
    k, counted = min(top_k, logits.shape[-1]), labels >= 0
    total = lambda v: jnp.sum(jnp.where(counted, v.astype(jnp.float32), 0.0))
    return dict(
      loss=total(losses),
      correct=total(top_k_correct(logits, labels, 1)),
      top_k_correct=total(top_k_correct(logits, labels, k)),
      count=total(jnp.ones(labels.shape)),
    )

  def train_step(ts, images, labels):
    key, augment_key, dropout_key = jax.random.split(ts.key, 3)
    if augment is not None:
      images = augment(augment_key, images)
    images = prepare(images)

    def loss_fn(params):
      logits, new_state = apply(params, ts.state, images, key=dropout_key, train=True)
      losses = cross_entropy(logits, labels, label_smoothing)
      return jnp.mean(losses), (new_state, logits, losses)

    grads, (new_state, logits, losses) = jax.grad(loss_fn, has_aux=True)(ts.params)
    updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
    params = optax.apply_updates(ts.params, updates)
    return TrainState(ts.step + 1, params, new_state, opt_state, key), metrics(logits, labels, losses)

  def eval_step(ts, images, labels):
    logits, _ = apply(ts.params, ts.state, prepare(images), train=False)
    return metrics(logits, labels, cross_entropy(logits, labels))

  if mesh is None:
    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
  state, batch = distributed.replicated(mesh), distributed.batch_sharding(mesh)
  return (
    jax.jit(train_step, in_shardings=(state, batch, batch), out_shardings=(state, state), donate_argnums=0),
    jax.jit(eval_step, in_shardings=(state, batch, batch), out_shardings=state),
  )
