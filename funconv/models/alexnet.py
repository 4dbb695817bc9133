"""AlexNet (Krizhevsky, Sutskever and Hinton 2012), single-stream as in torchvision."""

from funconv.combinators import serial
from funconv.layers import AdaptiveAvgPool, Conv, Dense, Dropout, Flatten, MaxPool, Relu
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int


def alexnet(num_classes=1000, dropout=0.5):
  """AlexNet (Krizhevsky et al. 2012) for 224x224x3 images, single-stream as in torchvision.

  Features: conv 11x11/4 (64 channels, padding 2), max pool 3x3/2, conv 5x5 (192), max pool,
  conv 3x3 (384, 256, 256), max pool, adaptive average pool to 6x6; classifier: dropout, dense
  4096, dropout, dense 4096, dense `num_classes`, ReLU after every conv and hidden dense layer.
  Named `conv1`, `relu1`, `pool1`, ..., `conv5`, `relu5`, `pool5`, `avgpool`, `flatten`,
  `drop6`, `fc6`, `relu6`, `drop7`, `fc7`, `relu7`, `fc8`. This is torchvision's one-GPU
  layout (the paper split the filters across two GPUs, with 96/256/384/384/256 channels).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 63` (the
  adaptive pool feeds the classifier 6x6 whatever the size). Parameters: 61,100,840 at 1000
  classes (state `()`); about 0.71 GMACs at 224x224x3. `apply(..., train=True)` needs a `key`
  for dropout.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    dropout: the dropout rate before `fc6` and `fc7`, in [0, 1] (default 0.5).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `num_classes` is not an int, or `dropout` not a number.
    ValueError: `num_classes` below 1; `dropout` outside [0, 1]. (`init`) an input smaller than
      63x63.

  Examples:
    >>> import funconv as fc
    >>> info = fc.summary(fc.models.alexnet(), (224, 224, 3), print_fn=None)
    >>> info["params"], info["rows"][-1]["output_shape"]
    (61100840, (1000,))
    >>> [(row["name"], row["output_shape"]) for row in info["rows"] if row["name"].startswith("pool")]
    [('pool1', (27, 27, 64)), ('pool2', (13, 13, 192)), ('pool5', (6, 6, 256))]
    >>> fc.summary(fc.models.alexnet(num_classes=10), (64, 64, 3), print_fn=None)["rows"][-1]["output_shape"]
    (10,)
  """
  positive_int(num_classes, "num_classes", "alexnet")
  check_number(dropout, "dropout", "alexnet", 0.0, 1.0)
  pool = MaxPool((3, 3), strides=(2, 2))
  return serial(
    conv1=Conv(64, (11, 11), strides=(4, 4), padding=2),
    relu1=Relu,
    pool1=pool,
    conv2=Conv(192, (5, 5), padding=2),
    relu2=Relu,
    pool2=pool,
    conv3=Conv(384, (3, 3), padding=1),
    relu3=Relu,
    conv4=Conv(256, (3, 3), padding=1),
    relu4=Relu,
    conv5=Conv(256, (3, 3), padding=1),
    relu5=Relu,
    pool5=pool,
    avgpool=AdaptiveAvgPool((6, 6)),
    flatten=Flatten,
    drop6=Dropout(dropout),
    fc6=Dense(4096),
    relu6=Relu,
    drop7=Dropout(dropout),
    fc7=Dense(4096),
    relu7=Relu,
    fc8=Dense(num_classes),
  )
