"""VGG (Simonyan and Zisserman 2015), configurations A, B, D and E."""

from funconv.combinators import serial
from funconv.layers import AdaptiveAvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, Relu
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int

# Output channels of each 3x3 convolution; "M" is a 2x2 max pool with stride 2.
CONFIGS = {
  11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
  13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
  16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
  19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def vgg(config, num_classes=1000, batch_norm=False, dropout=0.5, classifier_width=4096):
  """A VGG network (Simonyan and Zisserman 2015) from a configuration, for 224x224x3 images.

  `config` lists the feature extractor: an int is a 3x3 convolution with padding 1 and that many
  output channels (then BatchNorm with `batch_norm=True`) and ReLU; `"M"` a 2x2/2 max pool
  (`CONFIGS` holds the paper's A, B, D and E, used by `vgg11` to `vgg19`). An adaptive average
  pool to 7x7 feeds the classifier: dense `classifier_width`, ReLU, dropout, twice, then dense
  `num_classes` (torchvision's layout; at 224x224 with five pools the adaptive pool is the
  identity). `classifier_width` below 4096 gives the small VGGs of tests and CIFAR studies.
  Layers named as in the paper's Caffe models: `conv1_1`, (`bn1_1`,) `relu1_1`, ..., `pool1`,
  ..., `avgpool`, `flatten`, `fc6`, `relu6`, `drop6`, `fc7`, `relu7`, `drop7`, `fc8`.

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 2 ** pools` (32
  for the paper's five). State `()`, or BatchNorm's running mean and variance with
  `batch_norm=True`. `apply(..., train=True)` needs a `key` for dropout.

  Args:
    config: a tuple or list of ints >= 1 (conv widths) and `"M"` (pools).
    num_classes: the number of outputs, an int >= 1 (default 1000).
    batch_norm: BatchNorm after each convolution (default False).
    dropout: the dropout rate after `fc6` and `fc7`, in [0, 1] (default 0.5).
    classifier_width: the width of `fc6` and `fc7`, an int >= 1 (default 4096).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `config` is not a tuple or list, or one of its entries neither an int nor `"M"`;
      `num_classes` or `classifier_width` is not an int, or `dropout` not a number.
    ValueError: a width, `num_classes` or `classifier_width` below 1; `dropout` outside [0, 1].
      (`init`) an input too small for the pools.

  Examples:
    >>> import funconv as fc
    >>> net = fc.models.vgg((16, "M", 32, 32, "M"), num_classes=10, batch_norm=True, classifier_width=64)
    >>> info = fc.summary(net, (32, 32, 3), print_fn=None)
    >>> [row["name"] for row in info["rows"]][:9]
    ['conv1_1', 'bn1_1', 'relu1_1', 'pool1', 'conv2_1', 'bn2_1', 'relu2_1', 'conv2_2', 'bn2_2']
    >>> [(row["name"], row["output_shape"]) for row in info["rows"] if row["type"] in ("MaxPool", "AdaptiveAvgPool")]
    [('pool1', (16, 16, 16)), ('pool2', (8, 8, 32)), ('avgpool', (7, 7, 32))]
    >>> info["params"], info["state"], info["rows"][-1]["output_shape"]
    (119722, 160, (10,))
  """
  positive_int(num_classes, "num_classes", "vgg")
  positive_int(classifier_width, "classifier_width", "vgg")
  check_number(dropout, "dropout", "vgg", 0.0, 1.0)
  if not isinstance(config, (tuple, list)):
    raise TypeError(f"vgg: config must be a tuple of conv widths and 'M' pools, got {config!r}")
  layers, block, conv = {}, 1, 1
  for i, item in enumerate(config):
    if item == "M":
      layers[f"pool{block}"] = MaxPool((2, 2), strides=(2, 2))
      block, conv = block + 1, 1
    else:
      positive_int(item, f"config[{i}] (a conv width, or 'M')", "vgg")
      layers[f"conv{block}_{conv}"] = Conv(item, (3, 3), padding=1)
      layers.update({f"bn{block}_{conv}": BatchNorm()} if batch_norm else {})
      layers[f"relu{block}_{conv}"] = Relu
      conv += 1
  return serial(
    **layers,
    avgpool=AdaptiveAvgPool((7, 7)),
    flatten=Flatten,
    fc6=Dense(classifier_width),
    relu6=Relu,
    drop6=Dropout(dropout),
    fc7=Dense(classifier_width),
    relu7=Relu,
    drop7=Dropout(dropout),
    fc8=Dense(num_classes),
  )


def vgg11(num_classes=1000, batch_norm=False):
  """VGG-11 (configuration A, `CONFIGS[11]`): 132,863,336 parameters at 1000 classes and 224x224x3
  (132,868,840 with batch norm).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 32`; a `vgg`
  network as documented there (3x3 convolutions with ReLU, five 2x2/2 max pools, adaptive
  average pool to 7x7, classifier 4096, 4096, `num_classes`, dropout 0.5), state `()` (BatchNorm's
  running statistics with `batch_norm=True`).

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    batch_norm: BatchNorm after each convolution (default False), as torchvision's `vgg11_bn`.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: as `vgg`, for `num_classes`.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.vgg11(), (224, 224, 3), print_fn=None)["params"]
    132863336
    >>> info = fc.summary(fc.models.vgg11(num_classes=10, batch_norm=True), (32, 32, 3), print_fn=None)
    >>> info["rows"][-1]["output_shape"], info["state"]        # BatchNorm's running mean and variance
    ((10,), 5504)
  """
  return vgg(CONFIGS[11], num_classes, batch_norm)


def vgg13(num_classes=1000, batch_norm=False):
  """VGG-13 (configuration B, `CONFIGS[13]`): 133,047,848 parameters at 1000 classes and 224x224x3
  (133,053,736 with batch norm).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 32`; a `vgg`
  network as documented there (3x3 convolutions with ReLU, five 2x2/2 max pools, adaptive
  average pool to 7x7, classifier 4096, 4096, `num_classes`, dropout 0.5), state `()` (BatchNorm's
  running statistics with `batch_norm=True`).

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    batch_norm: BatchNorm after each convolution (default False), as torchvision's `vgg13_bn`.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: as `vgg`, for `num_classes`.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.vgg13(), (224, 224, 3), print_fn=None)["params"]
    133047848
  """
  return vgg(CONFIGS[13], num_classes, batch_norm)


def vgg16(num_classes=1000, batch_norm=False):
  """VGG-16 (configuration D, `CONFIGS[16]`): 138,357,544 parameters at 1000 classes and 224x224x3
  (138,365,992 with batch norm).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 32`; a `vgg`
  network as documented there (3x3 convolutions with ReLU, five 2x2/2 max pools, adaptive
  average pool to 7x7, classifier 4096, 4096, `num_classes`, dropout 0.5), state `()` (BatchNorm's
  running statistics with `batch_norm=True`).

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    batch_norm: BatchNorm after each convolution (default False), as torchvision's `vgg16_bn`.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: as `vgg`, for `num_classes`.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.vgg16(), (224, 224, 3), print_fn=None)["params"]
    138357544
    >>> fc.summary(fc.models.vgg16(batch_norm=True), (224, 224, 3), print_fn=None)["params"]
    138365992
  """
  return vgg(CONFIGS[16], num_classes, batch_norm)


def vgg19(num_classes=1000, batch_norm=False):
  """VGG-19 (configuration E, `CONFIGS[19]`): 143,667,240 parameters at 1000 classes and 224x224x3
  (143,678,248 with batch norm).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 32`; a `vgg`
  network as documented there (3x3 convolutions with ReLU, five 2x2/2 max pools, adaptive
  average pool to 7x7, classifier 4096, 4096, `num_classes`, dropout 0.5), state `()` (BatchNorm's
  running statistics with `batch_norm=True`).

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    batch_norm: BatchNorm after each convolution (default False), as torchvision's `vgg19_bn`.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: as `vgg`, for `num_classes`.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.vgg19(), (224, 224, 3), print_fn=None)["params"]
    143667240
  """
  return vgg(CONFIGS[19], num_classes, batch_norm)
