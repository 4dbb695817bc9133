"""Shuffled, batched NumPy arrays with a deterministic order that can be resumed mid-epoch."""
import numpy as np


def epoch_order(num_examples, seed, epoch, shuffle=True):
  """The example order of `epoch`: a permutation drawn from `(seed, epoch)` alone, so any epoch can
  be reproduced (or resumed) without replaying the ones before it."""
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def num_batches(num_examples, batch_size, drop_remainder=True):
  return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def batches(x, y, batch_size, *, seed=0, epoch=0, shuffle=True, drop_remainder=True, start=0):
  """Yield `(x_batch, y_batch)` NumPy arrays for one epoch, from batch number `start` on.

  Example:
    >>> for xb, yb in batches(x_train, y_train, 128, seed=0, epoch=3):
    ...   params, state = step(params, state, xb, yb)
  """
  if len(x) != len(y):
    raise ValueError(f"batches: x and y must have the same length, got {len(x)} and {len(y)}")
  if batch_size < 1:
    raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
  order = epoch_order(len(x), seed, epoch, shuffle)
  for i in range(start, num_batches(len(x), batch_size, drop_remainder)):
    idx = order[i * batch_size:(i + 1) * batch_size]
    yield x[idx], y[idx]
