"""The classic architectures as funconv layers: `init`, `apply`, `summary` all work on them.

`MODELS` maps each constructor's name to it; every constructor takes `num_classes=`.
"""

from funconv.models.alexnet import alexnet
from funconv.models.lenet import lenet5
from funconv.models.mobilenet import mobilenet_v1
from funconv.models.small import small_cnn
from funconv.models.resnet import (
  cifar_resnet,
  resnet,
  resnet18,
  resnet20,
  resnet32,
  resnet34,
  resnet44,
  resnet50,
  resnet56,
  resnet101,
  resnet110,
  resnet152,
)
from funconv.models.vgg import vgg, vgg11, vgg13, vgg16, vgg19

MODELS = {
  model.__name__: model
  for model in (
    small_cnn,
    lenet5,
    alexnet,
    vgg11,
    vgg13,
    vgg16,
    vgg19,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    mobilenet_v1,
  )
}
"""Every zoo constructor by its name (the choices of `funconv-train --model`); each takes `num_classes=`.

Examples:
  >>> import funconv as fc
  >>> fc.models.MODELS["resnet20"] is fc.models.resnet20
  True
  >>> fc.summary(fc.models.MODELS["lenet5"](num_classes=10), (28, 28, 1), print_fn=None)["params"]
  61706
"""

__all__ = [
  "MODELS",
  "alexnet",
  "cifar_resnet",
  "lenet5",
  "mobilenet_v1",
  "resnet",
  "resnet18",
  "resnet20",
  "resnet32",
  "resnet34",
  "resnet44",
  "resnet50",
  "resnet56",
  "resnet101",
  "resnet110",
  "resnet152",
  "small_cnn",
  "vgg",
  "vgg11",
  "vgg13",
  "vgg16",
  "vgg19",
]
