"""`python -m funconv`: train a small CNN on scikit-learn's handwritten digits and report test accuracy.

The embedded default data set: 1,797 real 8x8 grey-level digits shipped with scikit-learn,
nothing downloaded. A fixed split (seed 0) keeps 20% for testing. The network uses funconv's
own convolution throughout; training steps are jit-compiled, batched with `fc.batched`, and
updated with optax's Adam.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funconv as fc


def load_digits(seed=0, test_fraction=0.2):
  """`(x_train, y_train, x_test, y_test)`: images `(N, 8, 8, 1)` scaled to [0, 1], integer labels."""
  from sklearn.datasets import load_digits as sklearn_digits
  data = sklearn_digits()
  images = (data.images / 16.0).astype(np.float32)[..., None]
  order = np.random.default_rng(seed).permutation(len(images))
  split = int(len(images) * (1 - test_fraction))
  train, test = order[:split], order[split:]
  return images[train], data.target[train], images[test], data.target[test]


def small_cnn(num_classes=10):
  return fc.serial(fc.Conv(32, (3, 3), padding="SAME"), fc.BatchNorm(), fc.Relu,
                   fc.Conv(64, (3, 3), padding="SAME"), fc.BatchNorm(), fc.Relu, fc.MaxPool((2, 2), (2, 2)),
                   fc.Flatten, fc.Dropout(0.3), fc.Dense(128), fc.Relu, fc.Dense(num_classes))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=15)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--lr", type=float, default=2e-3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  x_train, y_train, x_test, y_test = load_digits()
  net = small_cnn()
  key = jax.random.key(args.seed)
  _, params, state = net.init(key, x_train.shape[1:])
  optimizer = optax.adam(args.lr)
  opt_state = optimizer.init(params)
  apply = fc.batched(net.apply)

  @jax.jit
  def train_step(params, state, opt_state, x, y, key):
    def loss_fn(params):
      logits, new_state = apply(params, state, x, key=key, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state, loss

  @jax.jit
  def accuracy(params, state, x, y):
    return jnp.mean(jnp.argmax(apply(params, state, x)[0], axis=-1) == y)

  rng = np.random.default_rng(args.seed)
  steps = len(x_train) // args.batch_size
  print(f"funconv: small CNN on scikit-learn digits ({len(x_train)} train / {len(x_test)} test, 8x8x1), "
        f"{fc.summary(net, x_train.shape[1:], print_fn=None)['params']:,} parameters, {jax.devices()[0].platform}")
  start = time.perf_counter()
  for epoch in range(1, args.epochs + 1):
    order = rng.permutation(len(x_train))
    losses = []
    for i in range(steps):
      idx = order[i * args.batch_size:(i + 1) * args.batch_size]
      key, step_key = jax.random.split(key)
      params, state, opt_state, loss = train_step(params, state, opt_state, x_train[idx], y_train[idx], step_key)
      losses.append(loss)
    acc = float(accuracy(params, state, x_test, y_test))
    print(f"epoch {epoch:2d}  loss {float(np.mean(losses)):.4f}  test accuracy {acc:.4f}  "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
  print(f"final test accuracy: {acc:.4f}")


if __name__ == "__main__":
  main()
