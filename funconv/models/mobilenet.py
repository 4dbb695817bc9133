"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions."""

from funconv.combinators import serial
from funconv.layers import BatchNorm, Conv, Dense, DepthwiseConv, GlobalAvgPool, Relu
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int

# (output channels, stride) of each depthwise-separable block, Table 1 of the paper.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))


def mobilenet_v1(num_classes=1000, width_multiplier=1.0):
  """MobileNet v1 (Howard et al. 2017) for 224x224x3 images: depthwise-separable convolutions.

  A 3x3/2 convolution (32 channels), thirteen blocks (`BLOCKS`, Table 1 of the paper) of a
  depthwise 3x3 convolution (stride 1 or 2), BatchNorm, ReLU, a pointwise 1x1 convolution,
  BatchNorm, ReLU; global average pool, dense classifier. Convolutions are "SAME"-padded and
  have no bias (BatchNorm's beta is the bias). Layers named `stem/conv`, `stem/bn`,
  `stem/relu`, `block1/depthwise/conv`, ..., `block13/pointwise/relu`, `pool`, `fc`.

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W >= 1` (the head is a
  global pool; the feature map is `ceil(H / 32) x ceil(W / 32)`). Parameters at 1000 classes:
  4,231,976, counting BatchNorm's beta and gamma; the paper's Table 2 rounds it to 4.2 million
  (and its 569 million mult-adds to this one's 568,740,352 at 224x224x3). State: BatchNorm's
  running mean and variance (21,888 values). `width_multiplier` (the paper's alpha) scales
  every width `c` to `max(8, int(c * alpha))`: 0.25 gives the paper's 0.5 million parameters.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).
    width_multiplier: the paper's width multiplier alpha, a number > 0 (default 1.0).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `num_classes` is not an int, or `width_multiplier` not a number.
    ValueError: `num_classes` below 1; `width_multiplier` not a finite number > 0.

  Examples:
    >>> import funconv as fc
    >>> info = fc.summary(fc.models.mobilenet_v1(), (224, 224, 3), print_fn=None)
    >>> info["params"], info["state"], info["macs"]
    (4231976, 21888, 568740352)
    >>> fc.summary(fc.models.mobilenet_v1(width_multiplier=0.25), (224, 224, 3), print_fn=None)["params"]
    470072
    >>> small = fc.summary(fc.models.mobilenet_v1(num_classes=10, width_multiplier=0.25), (32, 32, 3), print_fn=None)
    >>> [(row["name"], row["output_shape"]) for row in small["rows"][-3:]]
    [('block13/pointwise/relu', (1, 1, 256)), ('pool', (256,)), ('fc', (10,))]
  """
  positive_int(num_classes, "num_classes", "mobilenet_v1")
  check_number(width_multiplier, "width_multiplier", "mobilenet_v1", 0.0, open_low=True)

  def width(c):
    return max(8, int(c * width_multiplier))

  def conv_bn_relu(conv):
    return serial(conv=conv, bn=BatchNorm(), relu=Relu)

  blocks = {
    f"block{i + 1}": serial(
      depthwise=conv_bn_relu(DepthwiseConv((3, 3), strides=(stride, stride), padding="SAME", use_bias=False)),
      pointwise=conv_bn_relu(Conv(width(channels), (1, 1), use_bias=False)),
    )
    for i, (channels, stride) in enumerate(BLOCKS)
  }
  return serial(
    stem=conv_bn_relu(Conv(width(32), (3, 3), strides=(2, 2), padding="SAME", use_bias=False)),
    **blocks,
    pool=GlobalAvgPool,
    fc=Dense(num_classes),
  )
