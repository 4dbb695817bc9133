"""Training and evaluation steps: jit-compiled, batched per-example losses, optax updates."""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funconv.batching import batched
from funconv.data.augment import normalize as normalize_images


class TrainState(NamedTuple):
  """Everything a training run carries from step to step, as one pytree."""
  step: Any        # int32 scalar
  params: Any
  state: Any       # layer state (BatchNorm's running statistics)
  opt_state: Any
  key: Any         # PRNG key for dropout and augmentation; split every step


def init_train_state(model, optimizer, input_shape, seed=0):
  """Initialise the model's params and state, the optimizer state and the step key."""
  init_key, run_key = jax.random.split(jax.random.key(seed))
  _, params, state = model.init(init_key, tuple(input_shape))
  return TrainState(jnp.zeros((), jnp.int32), params, state, optimizer.init(params), run_key)


def cross_entropy(logits, labels, label_smoothing=0.0):
  """Per-example softmax cross-entropy with integer labels (optax), optionally label-smoothed."""
  if label_smoothing:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def top_k_correct(logits, labels, k=1):
  """Per example, 1.0 if the label is among the `k` largest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)


def make_steps(model, optimizer, *, augment=None, normalize=None, label_smoothing=0.0, top_k=5):
  """`(train_step, eval_step)` for `model` (a funconv layer) and an optax `optimizer`.

  - `train_step(train_state, images, labels) -> (train_state, metrics)`: augments (`augment(key,
    images)`, on the device), normalises (`normalize=(mean, std)`), runs the model through
    `fc.batched` in training mode, takes the gradient of the mean per-example loss with
    `jax.grad`, applies optax's update. The input state's buffers are donated.
  - `eval_step(train_state, images, labels) -> metrics`: evaluation mode, no update.

  `metrics` holds sums over the batch (`loss`, `correct`, `top_k_correct`) and `count`, so that
  epoch totals are exact whatever the batch sizes.
  """
  apply = batched(model.apply)

  def prepare(images):
    return images if normalize is None else normalize_images(images, *normalize)

  def metrics(logits, labels, losses):
    k = min(top_k, logits.shape[-1])
    return dict(loss=jnp.sum(losses), correct=jnp.sum(top_k_correct(logits, labels, 1)),
                top_k_correct=jnp.sum(top_k_correct(logits, labels, k)), count=jnp.float32(labels.shape[0]))

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

  return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
