"""ResNets (He, Zhang, Ren and Sun 2016): ImageNet ResNet-18 to 152, and the CIFAR family."""
import jax.numpy as jnp
from jax import lax

import funconv as fc
from funconv.layers.base import layer
from funconv.ops.shapes import positive_int


def _conv_bn(width, window, stride=1, relu=True):
  """Convolution without bias (BatchNorm's beta is the bias), BatchNorm, optional ReLU."""
  pad = window // 2
  layers = [fc.Conv(width, (window, window), strides=(stride, stride), padding=pad, use_bias=False), fc.BatchNorm()]
  return layers + [fc.Relu] if relu else layers


def basic_block(width, stride, in_width):
  """Two 3x3 convolutions; a 1x1 projection shortcut where the shape changes (option B)."""
  main = fc.serial(*_conv_bn(width, 3, stride), *_conv_bn(width, 3, relu=False))
  shortcut = fc.Identity if stride == 1 and in_width == width else fc.serial(*_conv_bn(width, 1, stride, relu=False))
  return fc.serial(fc.residual(main, shortcut), fc.Relu), width


def bottleneck_block(width, stride, in_width):
  """1x1 reduce, 3x3 (carrying the stride, as torchvision's ResNet v1.5), 1x1 expand to 4x width."""
  out = 4 * width
  main = fc.serial(*_conv_bn(width, 1), *_conv_bn(width, 3, stride), *_conv_bn(out, 1, relu=False))
  shortcut = fc.Identity if stride == 1 and in_width == out else fc.serial(*_conv_bn(out, 1, stride, relu=False))
  return fc.serial(fc.residual(main, shortcut), fc.Relu), out


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
  layers = [*_conv_bn(64, 7, 2), fc.MaxPool((3, 3), strides=(2, 2), padding=1)]
  width = 64
  for stage, blocks in enumerate(stage_sizes):
    for i in range(blocks):
      unit, width = block(64 * 2 ** stage, 2 if stage > 0 and i == 0 else 1, width)
      layers.append(unit)
  return fc.serial(*layers, fc.GlobalAvgPool, fc.Dense(num_classes))


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


def cifar_resnet(depth, num_classes=10):
  """A CIFAR ResNet of `depth = 6n + 2` layers (He et al. 2016, section 4.2) for 32x32x3 inputs:
  a 3x3 conv (16), three stages of `n` basic blocks with 16, 32 and 64 channels (stride 2 into
  the second and third), identity shortcuts with subsampling and zero-padded channels where
  the shape changes (option A: no parameters), global average pool, dense classifier."""
  positive_int(num_classes, "num_classes", "cifar_resnet")
  if positive_int(depth, "depth", "cifar_resnet") < 8 or (depth - 2) % 6:
    raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
  n = (depth - 2) // 6
  layers = _conv_bn(16, 3)
  width = 16
  for stage, stage_width in enumerate((16, 32, 64)):
    for i in range(n):
      stride = 2 if stage > 0 and i == 0 else 1
      main = fc.serial(*_conv_bn(stage_width, 3, stride), *_conv_bn(stage_width, 3, relu=False))
      shortcut = fc.Identity if stride == 1 and width == stage_width else subsample_and_pad(stage_width, stride)
      layers.append(fc.serial(fc.residual(main, shortcut), fc.Relu))
      width = stage_width
  return fc.serial(*layers, fc.GlobalAvgPool, fc.Dense(num_classes))


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
