"""Shuffled, batched NumPy arrays with a deterministic order that can be resumed mid-epoch.

The order of an epoch depends on `(seed, epoch)` alone, so training resumed from a checkpoint at
`(epoch, batch)` sees exactly the batches an uninterrupted run would have: `batches(..., epoch=epoch,
start=batch)`.
"""

import numpy as np


def epoch_order(num_examples, seed, epoch, shuffle=True):
  """The example order of `epoch`: a permutation drawn from `(seed, epoch)` alone, so any epoch can
  be reproduced (or resumed) without replaying the ones before it.

  Args:
    num_examples: the number of examples `N`, an int >= 0.
    seed: the run's seed, an int >= 0 (NumPy's `default_rng([seed, epoch])`).
    epoch: the epoch number, an int >= 0.
    shuffle: False gives `0, 1, ..., N - 1` (default True).

  Returns:
    An int64 NumPy array `(N,)`, a permutation of `range(N)`.

  Examples:
    >>> import funconv as fc
    >>> order = fc.data.epoch_order(5, seed=0, epoch=3)
    >>> sorted(order.tolist()), order.tolist() == fc.data.epoch_order(5, seed=0, epoch=3).tolist()
    ([0, 1, 2, 3, 4], True)
    >>> fc.data.epoch_order(5, seed=0, epoch=3, shuffle=False).tolist()
    [0, 1, 2, 3, 4]
  """
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def num_batches(num_examples, batch_size, drop_remainder=True):
  """The number of batches `batches` yields in one epoch.

  Args:
    num_examples: the number of examples `N`, an int >= 0.
    batch_size: the examples per batch `B`, an int >= 1 (ValueError otherwise).
    drop_remainder: True (default): `floor(N / B)`, the last partial batch dropped; False:
      `ceil(N / B)`, the last batch smaller.

  Returns:
    An int.

  Examples:
    >>> import funconv as fc
    >>> fc.data.num_batches(10, 4), fc.data.num_batches(10, 4, drop_remainder=False)
    (2, 3)
  """
  if batch_size < 1:
    raise ValueError(f"num_batches: batch_size must be >= 1, got {batch_size}")
  return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def batches(x, y, batch_size, *, seed=0, epoch=0, shuffle=True, drop_remainder=True, start=0, pad=False, rows=None):
  """Yield `(x_batch, y_batch)` NumPy arrays for one epoch, from batch number `start` on.

  Batch `i` holds the examples `epoch_order(N, seed, epoch, shuffle)[i B:(i + 1) B]`.

  Args:
    x: the inputs `(N, ...)`, an array indexable by an integer array (a NumPy array).
    y: the integer labels `(N,)`, likewise.
    batch_size: `B`, an int >= 1.
    seed: the run's seed (default 0).
    epoch: the epoch number (default 0): each epoch has its own order.
    shuffle: False keeps the examples in order (default True).
    drop_remainder: True (default) drops the last partial batch, so every batch has `B` examples
      (one compiled step); False yields it.
    start: the first batch number to yield (default 0), to resume mid-epoch.
    pad: with `drop_remainder=False`, fill the last partial batch up to `B` with padding examples:
      the input of the batch's first example and the label -1, which `make_steps`' metrics leave
      out (default False).
    rows: a `slice` of each batch's rows: only those examples are read and yielded (default None:
      all). A process of a multi-host run reads its share of every global batch this way.

  Yields:
    `(x[idx], y[idx])`, `(B, ...)` each (fewer examples in an unpadded last partial batch; the
    `rows` of them where given), of `x`'s and `y`'s dtypes; `num_batches(N, B, drop_remainder) -
    start` of them.

  Raises:
    ValueError: (on the first `next`) `x` and `y` of different lengths, or `batch_size < 1`.

  Examples:
    >>> import numpy as np
    >>> import funconv as fc
    >>> x, y = np.zeros((10, 8, 8, 1), np.float32), np.arange(10)
    >>> [yb.tolist() for _, yb in fc.data.batches(x, y, 4, shuffle=False, drop_remainder=False)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    >>> [yb.tolist() for _, yb in fc.data.batches(x, y, 4, shuffle=False, drop_remainder=False, pad=True)][-1]
    [8, 9, -1, -1]
    >>> [yb.tolist() for _, yb in fc.data.batches(x, y, 4, shuffle=False, rows=slice(2, 4))]
    [[2, 3], [6, 7]]
    >>> [xb.shape for xb, _ in fc.data.batches(x, y, 4, seed=0, epoch=3)]
    [(4, 8, 8, 1), (4, 8, 8, 1)]
    >>> resumed = [yb.tolist() for _, yb in fc.data.batches(x, y, 4, seed=0, epoch=3, start=1)]
    >>> resumed == [yb.tolist() for _, yb in fc.data.batches(x, y, 4, seed=0, epoch=3)][1:]
    True
  """
  if len(x) != len(y):
    raise ValueError(f"batches: x and y must have the same length, got {len(x)} and {len(y)}")
  if batch_size < 1:
    raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
  order = epoch_order(len(x), seed, epoch, shuffle)
  for i in range(start, num_batches(len(x), batch_size, drop_remainder)):
    idx = order[i * batch_size : (i + 1) * batch_size]
    padding = batch_size - len(idx) if pad else 0
    idx = np.concatenate([idx, np.full(padding, -1)])[slice(None) if rows is None else rows]
    real = idx >= 0
    read = np.where(real, idx, order[i * batch_size])
    xb, yb = x[read], y[read]
    yield xb, yb if real.all() else np.where(real, yb, -1).astype(yb.dtype)
