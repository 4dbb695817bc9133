"""AlexNet (Krizhevsky, Sutskever and Hinton 2012), single-stream as in torchvision."""
import funconv as fc
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int


def alexnet(num_classes=1000, dropout=0.5):
  """AlexNet for 224x224x3 inputs (any size from 63x63 works: an adaptive pool feeds the classifier).

  Features: conv 11x11/4 (64), max pool 3/2, conv 5x5 (192), max pool, conv 3x3 (384, 256, 256),
  max pool, adaptive average pool to 6x6; classifier: dropout, dense 4096, dropout, dense 4096,
  dense `num_classes`, ReLU throughout; named `conv1`, `relu1`, `pool1`, ..., `fc6`, `fc7`, `fc8`. This is
  torchvision's one-GPU layout (the paper split the filters across two GPUs with 96/256/384/384/256 channels).
  61,100,840 parameters for 1000 classes.

  Example:
    >>> fc.summary(alexnet(), (224, 224, 3))["params"]
    61100840
  """
  positive_int(num_classes, "num_classes", "alexnet")
  check_number(dropout, "dropout", "alexnet", 0.0, 1.0)
  pool = fc.MaxPool((3, 3), strides=(2, 2))
  return fc.serial(
      conv1=fc.Conv(64, (11, 11), strides=(4, 4), padding=2), relu1=fc.Relu, pool1=pool,
      conv2=fc.Conv(192, (5, 5), padding=2), relu2=fc.Relu, pool2=pool,
      conv3=fc.Conv(384, (3, 3), padding=1), relu3=fc.Relu,
      conv4=fc.Conv(256, (3, 3), padding=1), relu4=fc.Relu,
      conv5=fc.Conv(256, (3, 3), padding=1), relu5=fc.Relu, pool5=pool,
      avgpool=fc.AdaptiveAvgPool((6, 6)), flatten=fc.Flatten,
      drop6=fc.Dropout(dropout), fc6=fc.Dense(4096), relu6=fc.Relu,
      drop7=fc.Dropout(dropout), fc7=fc.Dense(4096), relu7=fc.Relu,
      fc8=fc.Dense(num_classes))
