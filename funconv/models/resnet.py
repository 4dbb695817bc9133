"""ResNets (He, Zhang, Ren and Sun 2016): ImageNet ResNet-18 to 152, and the CIFAR family.

Layers are named as in the paper's tables: `stem/conv`, `stage1/block0/residual/branches/main/conv1`, ...,
`pool`, `fc`.
"""
import jax.numpy as jnp
from jax import lax

import funconv as fc
from funconv.layers.base import layer
from funconv.ops.shapes import positive_int


def _conv_bn(width, window, stride=1, relu=True, suffix=""):
  """`{conv, bn, relu}{suffix}`: convolution without bias (BatchNorm's beta is the bias), BatchNorm, optional
  ReLU."""
  conv = fc.Conv(width, (window, window), strides=(stride, stride), padding=window // 2, use_bias=False)
  return {f"conv{suffix}": conv, f"bn{suffix}": fc.BatchNorm(), **({f"relu{suffix}": fc.Relu} if relu else {})}


def _block(main, shortcut, shortcuts=True):
  """`relu(main(x) + shortcut(x))`; without `shortcuts`, the plain network's `relu(main(x))`."""
  return (fc.serial(residual=fc.residual(main, shortcut), relu=fc.Relu) if shortcuts else
          fc.serial(main=main, relu=fc.Relu))


def basic_block(width, stride, in_width):
  """Two 3x3 convolutions; a 1x1 projection shortcut where the shape changes (option B)."""
  main = fc.serial(**_conv_bn(width, 3, stride, suffix="1"), **_conv_bn(width, 3, relu=False, suffix="2"))
  same = stride == 1 and in_width == width
  return _block(main, fc.Identity if same else fc.serial(**_conv_bn(width, 1, stride, relu=False))), width


def bottleneck_block(width, stride, in_width):
  """1x1 reduce, 3x3 (carrying the stride, as torchvision's ResNet v1.5), 1x1 expand to 4x width."""
  out = 4 * width
  main = fc.serial(**_conv_bn(width, 1, suffix="1"), **_conv_bn(width, 3, stride, suffix="2"),
                   **_conv_bn(out, 1, relu=False, suffix="3"))
  same = stride == 1 and in_width == out
  return _block(main, fc.Identity if same else fc.serial(**_conv_bn(out, 1, stride, relu=False))), out


def resnet(block, stage_sizes, num_classes=1000):
  """An ImageNet ResNet for 224x224x3 inputs (any size from 32x32 works: the head is a global
  average pool): 7x7/2 stem, 3x3/2 max pool, four stages of 64/128/256/512 base widths (stride 2
  from the second), global average pool, dense classifier of `num_classes`.

  Example:
    >>> fc.summary(resnet50(), (224, 224, 3))["params"]
    25557032
  """
  positive_int(num_classes, "num_classes", "resnet")
  if not callable(block) or not isinstance(stage_sizes, (tuple, list)):
    raise TypeError(f"resnet: block must be a block function and stage_sizes a tuple of block counts, got "
                    f"block={block!r}, stage_sizes={stage_sizes!r}")
  for i, n in enumerate(stage_sizes):
    positive_int(n, f"stage_sizes[{i}]", "resnet")
  stem = fc.serial(**_conv_bn(64, 7, 2), maxpool=fc.MaxPool((3, 3), strides=(2, 2), padding=1))
  width, stages = 64, {}
  for stage, blocks in enumerate(stage_sizes):
    units = {}
    for i in range(blocks):
      units[f"block{i}"], width = block(64 * 2 ** stage, 2 if stage > 0 and i == 0 else 1, width)
    stages[f"stage{stage + 1}"] = fc.serial(**units)
  return fc.serial(stem=stem, **stages, pool=fc.GlobalAvgPool, fc=fc.Dense(num_classes))


def resnet18(num_classes=1000):
  """ResNet-18, basic blocks (2, 2, 2, 2): 11,689,512 parameters at 1000 classes."""
  return resnet(basic_block, (2, 2, 2, 2), num_classes)


def resnet34(num_classes=1000):
  """ResNet-34, basic blocks (3, 4, 6, 3): 21,797,672 parameters."""
  return resnet(basic_block, (3, 4, 6, 3), num_classes)


def resnet50(num_classes=1000):
  """ResNet-50, bottleneck blocks (3, 4, 6, 3): 25,557,032 parameters, about 4.1 GMACs at 224x224."""
  return resnet(bottleneck_block, (3, 4, 6, 3), num_classes)


def resnet101(num_classes=1000):
  """ResNet-101, bottleneck blocks (3, 4, 23, 3): 44,549,160 parameters."""
  return resnet(bottleneck_block, (3, 4, 23, 3), num_classes)


def resnet152(num_classes=1000):
  """ResNet-152, bottleneck blocks (3, 8, 36, 3): 60,192,808 parameters."""
  return resnet(bottleneck_block, (3, 8, 36, 3), num_classes)


def subsample_and_pad(width, stride):
  """The parameter-free "option A" shortcut: keep every `stride`-th position, zero-pad the channels
  equally on both sides up to `width`."""
  def init(key, input_shape):
    *spatial, channels = input_shape
    return (*(-(-n // stride) for n in spatial), width), (), ()

  def apply(params, state, x, *, key=None, train=False):
    x = lax.slice(x, (0,) * x.ndim, x.shape, (stride, stride, 1))
    extra = width - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)]), state

  return layer("SubsampleAndPad", init, apply)


def cifar_resnet(depth, num_classes=10, shortcuts=True):
  """A CIFAR ResNet of `depth = 6n + 2` layers (He et al. 2016, section 4.2) for 32x32x3 inputs:
  a 3x3 conv (16), three stages of `n` basic blocks with 16, 32 and 64 channels (stride 2 into
  the second and third), identity shortcuts with subsampling and zero-padded channels where
  the shape changes (option A: no parameters), global average pool, dense classifier.
  `shortcuts=False` gives the paper's plain network: the same layers and parameters, no skip connections."""
  positive_int(num_classes, "num_classes", "cifar_resnet")
  if positive_int(depth, "depth", "cifar_resnet") < 8 or (depth - 2) % 6:
    raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
  if not isinstance(shortcuts, bool):
    raise TypeError(f"cifar_resnet: shortcuts must be True or False, got {shortcuts!r}")
  n = (depth - 2) // 6
  width, stages = 16, {}
  for stage, stage_width in enumerate((16, 32, 64)):
    units = {}
    for i in range(n):
      stride = 2 if stage > 0 and i == 0 else 1
      main = fc.serial(**_conv_bn(stage_width, 3, stride, suffix="1"), **_conv_bn(stage_width, 3, relu=False,
                                                                                  suffix="2"))
      shortcut = fc.Identity if stride == 1 and width == stage_width else subsample_and_pad(stage_width, stride)
      units[f"block{i}"] = _block(main, shortcut, shortcuts)
      width = stage_width
    stages[f"stage{stage + 1}"] = fc.serial(**units)
  return fc.serial(stem=fc.serial(**_conv_bn(16, 3)), **stages, pool=fc.GlobalAvgPool, fc=fc.Dense(num_classes))


def resnet20(num_classes=10):
  """CIFAR ResNet-20: 0.27M parameters (He et al. 2016, Table 6)."""
  return cifar_resnet(20, num_classes)


def resnet32(num_classes=10):
  """CIFAR ResNet-32: 0.46M parameters."""
  return cifar_resnet(32, num_classes)


def resnet44(num_classes=10):
  """CIFAR ResNet-44: 0.66M parameters."""
  return cifar_resnet(44, num_classes)


def resnet56(num_classes=10):
  """CIFAR ResNet-56: 0.85M parameters."""
  return cifar_resnet(56, num_classes)


def resnet110(num_classes=10):
  """CIFAR ResNet-110: 1.7M parameters."""
  return cifar_resnet(110, num_classes)
