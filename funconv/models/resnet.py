"""ResNets (He, Zhang, Ren and Sun 2016): ImageNet ResNet-18 to 152, and the CIFAR family.

Layers are named as in the paper's tables: `stem/conv`, `stage1/block0/residual/branches/main/conv1`, ...,
`pool`, `fc`.
"""

import jax.numpy as jnp
from jax import lax

from funconv.combinators import residual, serial
from funconv.layers import BatchNorm, Conv, Dense, GlobalAvgPool, Identity, MaxPool, Relu
from funconv.layers.base import layer
from funconv.ops.shapes import positive_int


def _conv_bn(width, window, stride=1, relu=True, suffix=""):
  """`{conv, bn, relu}{suffix}`: convolution without bias (BatchNorm's beta is the bias), BatchNorm, optional
  ReLU."""
  conv = Conv(width, (window, window), strides=(stride, stride), padding=window // 2, use_bias=False)
  return {f"conv{suffix}": conv, f"bn{suffix}": BatchNorm(), **({f"relu{suffix}": Relu} if relu else {})}


def _block(main, shortcut, shortcuts=True):
  """`relu(main(x) + shortcut(x))`; without `shortcuts`, the plain network's `relu(main(x))`."""
  return serial(residual=residual(main, shortcut), relu=Relu) if shortcuts else serial(main=main, relu=Relu)


def basic_block(width, stride, in_width):
  """The ResNet basic block: two 3x3 convolutions with BatchNorm, `relu(main(x) + shortcut(x))`.

  Main branch: conv 3x3 (stride `stride`), BN, ReLU, conv 3x3, BN; the shortcut is the identity,
  or a 1x1 convolution with stride `stride` and BN where the shape changes (the paper's
  option B). Convolutions have no bias. A block function for `resnet`.

  Args:
    width: the block's output channels, an int.
    stride: the first convolution's (and the projection's) stride, an int.
    in_width: the block's input channels, an int.

  Returns:
    `(layer, out_width)`: the block, a `Layer`, and its output channels, `width`.

  Examples:
    >>> import funconv as fc
    >>> from funconv.models.resnet import basic_block
    >>> block, width = basic_block(128, 2, 64)           # a stage's first block: a projection shortcut
    >>> info = fc.summary(block, (56, 56, 64), print_fn=None)
    >>> width, info["rows"][-1]["output_shape"], info["params"]
    (128, (28, 28, 128), 230144)
  """
  main = serial(**_conv_bn(width, 3, stride, suffix="1"), **_conv_bn(width, 3, relu=False, suffix="2"))
  same = stride == 1 and in_width == width
  return _block(main, Identity if same else serial(**_conv_bn(width, 1, stride, relu=False))), width


def bottleneck_block(width, stride, in_width):
  """The ResNet bottleneck block: 1x1 reduce, 3x3, 1x1 expand to `4 * width`, with BatchNorm.

  Main branch: conv 1x1 (`width`), BN, ReLU, conv 3x3 (`width`, stride `stride`: torchvision's
  ResNet v1.5; the paper strides the first 1x1), BN, ReLU, conv 1x1 (`4 * width`), BN; the
  shortcut is the identity, or a 1x1 convolution with stride `stride` and BN where the shape
  changes (option B); then `relu(main(x) + shortcut(x))`. A block function for `resnet`.

  Args:
    width: the bottleneck's channels, an int; the block outputs `4 * width`.
    stride: the 3x3 convolution's (and the projection's) stride, an int.
    in_width: the block's input channels, an int.

  Returns:
    `(layer, out_width)`: the block, a `Layer`, and its output channels, `4 * width`.

  Examples:
    >>> import funconv as fc
    >>> from funconv.models.resnet import bottleneck_block
    >>> block, width = bottleneck_block(64, 1, 64)       # ResNet-50's first block
    >>> width, fc.summary(block, (56, 56, 64), print_fn=None)["rows"][-1]["output_shape"]
    (256, (56, 56, 256))
  """
  out = 4 * width
  main = serial(
    **_conv_bn(width, 1, suffix="1"),
    **_conv_bn(width, 3, stride, suffix="2"),
    **_conv_bn(out, 1, relu=False, suffix="3"),
  )
  same = stride == 1 and in_width == out
  return _block(main, Identity if same else serial(**_conv_bn(out, 1, stride, relu=False))), out


def resnet(block, stage_sizes, num_classes=1000):
  """An ImageNet ResNet (He et al. 2016) from a block function and the number of blocks per stage.

  A 7x7/2 convolution (64 channels), BN, ReLU and a 3x3/2 max pool (`stem`); one stage per entry
  of `stage_sizes`, of that many blocks with base width `64 * 2 ** i` (the first block of each
  stage after the first has stride 2); global average pool (`pool`), dense classifier (`fc`).
  Layers are named `stem/conv`, `stem/bn`, `stem/relu`, `stem/maxpool`,
  `stage1/block0/residual/branches/main/conv1`, ..., `stage1/block0/residual/branches/shortcut`
  (`.../shortcut/conv` for a projection), `stage1/block0/relu`, ..., `pool`, `fc`.

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), for 224x224x3 images, but any
  size works (the head is a global pool; the last feature map is `H / 32`, rounded up). State:
  BatchNorm's running mean and variance. `apply(..., train=True)` needs `funconv.batched` (or a
  vmap with axis name `"batch"`) for BatchNorm's batch statistics.

  Args:
    block: a block function `block(width, stride, in_width) -> (layer, out_width)`, such as
      `funconv.models.resnet.basic_block` or `bottleneck_block`.
    stage_sizes: the number of blocks of each stage, a tuple or list of ints >= 1 (four for the
      standard ResNets: `resnet18` is `(2, 2, 2, 2)` of basic blocks).
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `block` is not callable or `stage_sizes` not a tuple or list; a size or
      `num_classes` is not an int.
    ValueError: a size or `num_classes` below 1.

  Examples:
    >>> import funconv as fc
    >>> from funconv.models.resnet import basic_block, bottleneck_block
    >>> net = fc.models.resnet(basic_block, (1, 1, 1, 1), num_classes=10)      # a ResNet-10
    >>> info = fc.summary(net, (64, 64, 3), print_fn=None)
    >>> info["params"], [(row["name"], row["output_shape"]) for row in info["rows"][-3:]]
    (4910922, [('stage4/block0/relu', (2, 2, 512)), ('pool', (512,)), ('fc', (10,))])
    >>> fc.summary(fc.models.resnet(bottleneck_block, (3, 4, 6, 3)), (224, 224, 3), print_fn=None)["params"]
    25557032
  """
  positive_int(num_classes, "num_classes", "resnet")
  if not callable(block) or not isinstance(stage_sizes, (tuple, list)):
    raise TypeError(
      f"resnet: block must be a block function and stage_sizes a tuple of block counts, got "
      f"block={block!r}, stage_sizes={stage_sizes!r}"
    )
  for i, n in enumerate(stage_sizes):
    positive_int(n, f"stage_sizes[{i}]", "resnet")
  stem = serial(**_conv_bn(64, 7, 2), maxpool=MaxPool((3, 3), strides=(2, 2), padding=1))
  width, stages = 64, {}
  for stage, blocks in enumerate(stage_sizes):
    units = {}
    for i in range(blocks):
      units[f"block{i}"], width = block(64 * 2**stage, 2 if stage > 0 and i == 0 else 1, width)
    stages[f"stage{stage + 1}"] = serial(**units)
  return serial(stem=stem, **stages, pool=GlobalAvgPool, fc=Dense(num_classes))


def resnet18(num_classes=1000):
  """ResNet-18 for 224x224x3 images: `resnet` with basic blocks (2, 2, 2, 2); 11,689,512 parameters at 1000 classes.

  The ImageNet family `resnet18`, `resnet34` (basic blocks, `basic_block`), `resnet50`,
  `resnet101`, `resnet152` (bottleneck blocks, `bottleneck_block`, torchvision's ResNet v1.5)
  is `resnet` with the paper's stage sizes (Table 1) and torchvision's layout: parameter counts
  match torchvision's `resnet18` ... `resnet152`. Per example `(H, W, C) -> (num_classes,)`
  logits (no softmax), any size (the head is a global pool); 224x224x3 as on ImageNet. Params:
  nested tuples as `init` makes them (no convolution has a bias: BatchNorm's beta is the bias);
  state: BatchNorm's running mean and variance (9,600 values for ResNet-18). Layers are named
  `stem/conv`, ..., `stage1/block0/residual/branches/main/conv1`, ..., `pool`, `fc`
  (see `resnet`). `apply(..., train=True)` needs `funconv.batched` for BatchNorm.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> info = fc.summary(fc.models.resnet18(), (224, 224, 3), print_fn=None)
    >>> info["params"], info["state"], round(info["macs"] / 1e9, 2)       # GMACs
    (11689512, 9600, 1.82)
    >>> small = fc.summary(fc.models.resnet18(num_classes=10), (32, 32, 3), print_fn=None)
    >>> [(row["name"], row["output_shape"]) for row in small["rows"] if row["name"] in ("stem/maxpool", "pool", "fc")]
    [('stem/maxpool', (8, 8, 64)), ('pool', (512,)), ('fc', (10,))]
  """
  return resnet(basic_block, (2, 2, 2, 2), num_classes)


def resnet34(num_classes=1000):
  """ResNet-34: `resnet` with basic blocks (3, 4, 6, 3); 21,797,672 parameters at 1000 classes.

  As `resnet18` (the family's documentation), for 224x224x3 images, with basic blocks.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet34(), (224, 224, 3), print_fn=None)["params"]
    21797672
  """
  return resnet(basic_block, (3, 4, 6, 3), num_classes)


def resnet50(num_classes=1000):
  """ResNet-50: `resnet` with bottleneck blocks (3, 4, 6, 3); 25,557,032 parameters at 1000 classes.

  As `resnet18` (the family's documentation), for 224x224x3 images, with bottleneck blocks
  (`bottleneck_block`: 1x1, 3x3, 1x1 convolutions, 4x expansion, the stride on the 3x3 as
  torchvision's ResNet v1.5); the feature map before the pool has 2048 channels. About 4.1 GMACs at
  224x224x3.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet50(), (224, 224, 3), print_fn=None)["params"]
    25557032
  """
  return resnet(bottleneck_block, (3, 4, 6, 3), num_classes)


def resnet101(num_classes=1000):
  """ResNet-101: `resnet` with bottleneck blocks (3, 4, 23, 3); 44,549,160 parameters at 1000 classes.

  As `resnet18` (the family's documentation), for 224x224x3 images, with bottleneck blocks
  (`bottleneck_block`: 1x1, 3x3, 1x1 convolutions, 4x expansion, the stride on the 3x3 as
  torchvision's ResNet v1.5); the feature map before the pool has 2048 channels.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet101(), (224, 224, 3), print_fn=None)["params"]
    44549160
  """
  return resnet(bottleneck_block, (3, 4, 23, 3), num_classes)


def resnet152(num_classes=1000):
  """ResNet-152: `resnet` with bottleneck blocks (3, 8, 36, 3); 60,192,808 parameters at 1000 classes.

  As `resnet18` (the family's documentation), for 224x224x3 images, with bottleneck blocks
  (`bottleneck_block`: 1x1, 3x3, 1x1 convolutions, 4x expansion, the stride on the 3x3 as
  torchvision's ResNet v1.5); the feature map before the pool has 2048 channels.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 1000).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet152(), (224, 224, 3), print_fn=None)["params"]
    60192808
  """
  return resnet(bottleneck_block, (3, 8, 36, 3), num_classes)


def subsample_and_pad(width, stride):
  """The parameter-free "option A" shortcut of the CIFAR ResNets: `(H, W, C) -> (ceil(H / stride), ceil(W /
  stride), width)`.

  Keeps every `stride`-th position along both spatial axes and zero-pads the channels up to
  `width`, equally on both sides (the extra channel of an odd difference at the end). Params
  and state `()`.

  Args:
    width: the output channels, an int >= the input's.
    stride: the subsampling factor, an int.

  Returns:
    A `Layer` named `SubsampleAndPad`, for 2-D images `(H, W, C)`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from funconv.models.resnet import subsample_and_pad
    >>> y, state = subsample_and_pad(32, 2).apply((), (), jnp.ones((32, 32, 16)))
    >>> y.shape, float(y[..., :8].sum()), float(y[..., 8:24].mean())   # 8 zero channels on each side
    ((16, 16, 32), 0.0, 1.0)
  """

  def init(key, input_shape):
    *spatial, channels = input_shape
    return (*(-(-n // stride) for n in spatial), width), (), ()

  def apply(params, state, x, *, key=None, train=False):
    x = lax.slice(x, (0,) * x.ndim, x.shape, (stride, stride, 1))
    extra = width - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)]), state

  return layer("SubsampleAndPad", init, apply)


def cifar_resnet(depth, num_classes=10, shortcuts=True):
  """A CIFAR ResNet (He et al. 2016, section 4.2) of `depth = 6n + 2` layers, for 32x32x3 images.

  A 3x3 convolution (16 channels), BN, ReLU (`stem`); three stages of `n` basic blocks (two 3x3
  convolutions with BN) of 16, 32 and 64 channels, stride 2 into the second and third; global
  average pool (`pool`), dense classifier (`fc`). Shortcuts are the identity, and where the
  shape changes `subsample_and_pad` (the paper's option A: every second position, zero-padded
  channels, no parameters). `shortcuts=False` gives the paper's plain network: the same layers
  and parameters, `relu(main(x))` without the skip connections. Layers are named `stem/conv`,
  `stage1/block0/residual/branches/main/conv1`, ..., `stage1/block0/relu`, ..., `pool`, `fc`
  (`stage1/block0/main/conv1` in the plain network).

  Per example `(H, W, C) -> (num_classes,)` logits (no softmax), any `H, W` (the head is a
  global pool; the last feature map is `H / 4`, rounded up, with 64 channels). State:
  BatchNorm's running mean and variance. `resnet20` ... `resnet110` are the paper's depths.

  Args:
    depth: the number of weighted layers, `6n + 2` with `n >= 1`: 8, 14, 20, 26, ..., 110, ...
    num_classes: the number of outputs, an int >= 1 (default 10).
    shortcuts: True (default) for the ResNet, False for the plain network.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `depth` or `num_classes` is not an int; `shortcuts` is not a bool.
    ValueError: `num_classes` below 1; `depth` not `6n + 2` with `n >= 1`.

  Examples:
    >>> import funconv as fc
    >>> info = fc.summary(fc.models.cifar_resnet(8), (32, 32, 3), print_fn=None)
    >>> info["params"], info["state"], info["rows"][-1]["output_shape"]
    (75290, 480, (10,))
    >>> fc.summary(fc.models.cifar_resnet(20, shortcuts=False), (32, 32, 3), print_fn=None)["params"]   # = resnet20's
    269722
  """
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
      main = serial(**_conv_bn(stage_width, 3, stride, suffix="1"), **_conv_bn(stage_width, 3, relu=False, suffix="2"))
      shortcut = Identity if stride == 1 and width == stage_width else subsample_and_pad(stage_width, stride)
      units[f"block{i}"] = _block(main, shortcut, shortcuts)
      width = stage_width
    stages[f"stage{stage + 1}"] = serial(**units)
  return serial(stem=serial(**_conv_bn(16, 3)), **stages, pool=GlobalAvgPool, fc=Dense(num_classes))


def resnet20(num_classes=10):
  """CIFAR ResNet-20: `cifar_resnet(20, num_classes)`, three basic blocks per stage; 269,722 parameters at 10
  classes (0.27M in He et al. 2016, Table 6).

  The CIFAR family `resnet20`, `resnet32`, `resnet44`, `resnet56`, `resnet110` is `cifar_resnet`
  at the paper's depths (`n` = 3, 5, 7, 9, 18 blocks per stage), with option A shortcuts. Per
  example `(H, W, C) -> (num_classes,)` logits (no softmax), for 32x32x3 images (any size works:
  the head is a global pool). State: BatchNorm's running mean and variance (1,376 values for
  ResNet-20). `apply(..., train=True)` needs `funconv.batched` for BatchNorm.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> info = fc.summary(fc.models.resnet20(), (32, 32, 3), print_fn=None)
    >>> info["params"], info["state"], round(info["macs"] / 1e6, 1)       # MMACs
    (269722, 1376, 40.6)
    >>> [(row["name"], row["output_shape"]) for row in info["rows"] if row["name"].endswith("block0/relu")]
    [('stage1/block0/relu', (32, 32, 16)), ('stage2/block0/relu', (16, 16, 32)), ('stage3/block0/relu', (8, 8, 64))]
    >>> fc.summary(fc.models.resnet20(num_classes=100), (32, 32, 3), print_fn=None)["rows"][-1]["output_shape"]
    (100,)
  """
  return cifar_resnet(20, num_classes)


def resnet32(num_classes=10):
  """CIFAR ResNet-32: `cifar_resnet(32, num_classes)`, 5 basic blocks per stage; 464,154 parameters at 10
  classes (0.46M in He et al. 2016, Table 6).

  As `resnet20` (the family's documentation): per example `(H, W, C) -> (num_classes,)` logits,
  for 32x32x3 images.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet32(), (32, 32, 3), print_fn=None)["params"]
    464154
  """
  return cifar_resnet(32, num_classes)


def resnet44(num_classes=10):
  """CIFAR ResNet-44: `cifar_resnet(44, num_classes)`, 7 basic blocks per stage; 658,586 parameters at 10
  classes (0.66M in He et al. 2016, Table 6).

  As `resnet20` (the family's documentation): per example `(H, W, C) -> (num_classes,)` logits,
  for 32x32x3 images.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet44(), (32, 32, 3), print_fn=None)["params"]
    658586
  """
  return cifar_resnet(44, num_classes)


def resnet56(num_classes=10):
  """CIFAR ResNet-56: `cifar_resnet(56, num_classes)`, 9 basic blocks per stage; 853,018 parameters at 10
  classes (0.85M in He et al. 2016, Table 6).

  As `resnet20` (the family's documentation): per example `(H, W, C) -> (num_classes,)` logits,
  for 32x32x3 images.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet56(), (32, 32, 3), print_fn=None)["params"]
    853018
  """
  return cifar_resnet(56, num_classes)


def resnet110(num_classes=10):
  """CIFAR ResNet-110: `cifar_resnet(110, num_classes)`, 18 basic blocks per stage; 1,727,962 parameters at 10
  classes (1.7M in He et al. 2016, Table 6).

  As `resnet20` (the family's documentation): per example `(H, W, C) -> (num_classes,)` logits,
  for 32x32x3 images.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError, ValueError: `num_classes` is not an int >= 1.

  Examples:
    >>> import funconv as fc
    >>> fc.summary(fc.models.resnet110(), (32, 32, 3), print_fn=None)["params"]
    1727962
  """
  return cifar_resnet(110, num_classes)
