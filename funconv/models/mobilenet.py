"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions."""
import funconv as fc
from funconv.layers.base import check_number
from funconv.ops.shapes import positive_int

# (output channels, stride) of each depthwise-separable block, Table 1 of the paper.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))


def mobilenet_v1(num_classes=1000, width_multiplier=1.0):
  """MobileNet v1 for 224x224x3: a 3x3/2 conv (32), thirteen blocks of depthwise 3x3 conv, BN,
  ReLU, pointwise 1x1 conv, BN, ReLU (`BLOCKS`), global average pool, dense classifier; its layers are named
  `stem/conv`, `block1/depthwise/conv`, `block1/pointwise/bn`, ..., `pool`, `fc`.

  Parameters at 1000 classes: 4,231,976 counting BatchNorm's beta and gamma (trainable) and no
  convolution biases; the paper's Table 2 rounds the count to 4.2 million.
  """
  positive_int(num_classes, "num_classes", "mobilenet_v1")
  check_number(width_multiplier, "width_multiplier", "mobilenet_v1", 0.0, open_low=True)

  def width(c):
    return max(8, int(c * width_multiplier))

  def conv_bn_relu(conv):
    return fc.serial(conv=conv, bn=fc.BatchNorm(), relu=fc.Relu)

  blocks = {f"block{i + 1}": fc.serial(
      depthwise=conv_bn_relu(fc.DepthwiseConv((3, 3), strides=(stride, stride), padding="SAME", use_bias=False)),
      pointwise=conv_bn_relu(fc.Conv(width(channels), (1, 1), use_bias=False))) for i, (channels, stride) in
      enumerate(BLOCKS)}
  return fc.serial(stem=conv_bn_relu(fc.Conv(width(32), (3, 3), strides=(2, 2), padding="SAME", use_bias=False)),
                   **blocks, pool=fc.GlobalAvgPool, fc=fc.Dense(num_classes))
