"""A small CNN for small images: the main job's default model."""

from funconv.combinators import serial
from funconv.layers import BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, Relu
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int


def small_cnn(num_classes=10, width=32, dropout=0.3):
  """A small CNN for small images (scikit-learn's 8x8 digits, MNIST): `funconv-train`'s default model.

  Two 3x3 "SAME" convolutions (`width`, then `2 * width` channels), each followed by BatchNorm
  and ReLU, a 2x2/2 max pool, dropout, a 128-unit dense layer with ReLU and the classifier.
  Layers named `conv1`, `bn1`, `relu1`, `conv2`, `bn2`, `relu2`, `pool`, `flatten`, `dropout`,
  `fc1`, `relu3`, `fc2`. About 99% test accuracy on the digits in 15 epochs.

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 2` (`fc1`'s input
  size, `(H // 2) * (W // 2) * 2 * width`, is fixed at `init`). Params: 151,498 for 8x8x1
  inputs and 10 classes, with BatchNorm's `(beta, gamma)`; state: BatchNorm's running mean and
  variance (192 values). `apply(..., train=True)` needs a `key` (dropout) and a batch axis
  named `"batch"` (BatchNorm), as `funconv.batched` gives.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).
    width: the first convolution's channels, an int >= 1 (default 32).
    dropout: the dropout rate before `fc1`, in [0, 1] (default 0.3).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `num_classes` or `width` is not an int, or `dropout` not a number.
    ValueError: `num_classes` or `width` below 1; `dropout` outside [0, 1].

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.models.small_cnn()
    >>> info = fc.summary(net, (8, 8, 1), print_fn=None)
    >>> info["params"], info["state"], info["rows"][-1]["output_shape"]
    (151498, 192, (10,))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> logits, _ = fc.batched(net.apply)(params, state, jnp.zeros((4, 8, 8, 1)))   # evaluation mode
    >>> logits.shape, logits.dtype
    ((4, 10), dtype('float32'))
  """
  positive_int(num_classes, "num_classes", "small_cnn")
  positive_int(width, "width", "small_cnn")
  check_number(dropout, "dropout", "small_cnn", 0.0, 1.0)
  return serial(
    conv1=Conv(width, (3, 3), padding="SAME"),
    bn1=BatchNorm(),
    relu1=Relu,
    conv2=Conv(2 * width, (3, 3), padding="SAME"),
    bn2=BatchNorm(),
    relu2=Relu,
    pool=MaxPool((2, 2), strides=(2, 2)),
    flatten=Flatten,
    dropout=Dropout(dropout),
    fc1=Dense(128),
    relu3=Relu,
    fc2=Dense(num_classes),
  )
