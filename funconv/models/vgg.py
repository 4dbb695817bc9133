"""VGG (Simonyan and Zisserman 2015), configurations A, B, D and E."""
import funconv as fc
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
  """A VGG network from a configuration: a tuple of conv widths and `"M"` pools (see `CONFIGS`),
  for 224x224x3 inputs (any size from 32x32 works: an adaptive pool feeds the classifier).

  Each convolution is 3x3 with padding 1 (then BatchNorm with `batch_norm=True`) and ReLU; an
  adaptive average pool to 7x7 feeds the classifier: dense `classifier_width`, ReLU, dropout,
  twice, then dense `num_classes` (torchvision's layout; at 224x224 the pool is the identity).
  `classifier_width` below 4096 gives the small VGGs used in tests and CIFAR studies. Layers are named as in
  the paper's Caffe models: `conv1_1`, `relu1_1`, ..., `pool1`, ..., `fc6`, `fc7`, `fc8`.
  """
  positive_int(num_classes, "num_classes", "vgg")
  positive_int(classifier_width, "classifier_width", "vgg")
  check_number(dropout, "dropout", "vgg", 0.0, 1.0)
  if not isinstance(config, (tuple, list)):
    raise TypeError(f"vgg: config must be a tuple of conv widths and 'M' pools, got {config!r}")
  layers, block, conv = {}, 1, 1
  for i, item in enumerate(config):
    if item == "M":
      layers[f"pool{block}"] = fc.MaxPool((2, 2), strides=(2, 2))
      block, conv = block + 1, 1
    else:
      positive_int(item, f"config[{i}] (a conv width, or 'M')", "vgg")
      layers[f"conv{block}_{conv}"] = fc.Conv(item, (3, 3), padding=1)
      layers.update({f"bn{block}_{conv}": fc.BatchNorm()} if batch_norm else {})
      layers[f"relu{block}_{conv}"] = fc.Relu
      conv += 1
  return fc.serial(**layers, avgpool=fc.AdaptiveAvgPool((7, 7)), flatten=fc.Flatten,
                   fc6=fc.Dense(classifier_width), relu6=fc.Relu, drop6=fc.Dropout(dropout),
                   fc7=fc.Dense(classifier_width), relu7=fc.Relu, drop7=fc.Dropout(dropout),
                   fc8=fc.Dense(num_classes))


def vgg11(num_classes=1000, batch_norm=False):
  """VGG-11 (configuration A), 224x224x3: 132,863,336 parameters (132,868,840 with batch norm)."""
  return vgg(CONFIGS[11], num_classes, batch_norm)


def vgg13(num_classes=1000, batch_norm=False):
  """VGG-13 (configuration B), 224x224x3: 133,047,848 parameters."""
  return vgg(CONFIGS[13], num_classes, batch_norm)


def vgg16(num_classes=1000, batch_norm=False):
  """VGG-16 (configuration D), 224x224x3: 138,357,544 parameters (138,365,992 with batch norm)."""
  return vgg(CONFIGS[16], num_classes, batch_norm)


def vgg19(num_classes=1000, batch_norm=False):
  """VGG-19 (configuration E), 224x224x3: 143,667,240 parameters."""
  return vgg(CONFIGS[19], num_classes, batch_norm)
