"""The classic architectures as funconv layers: `init`, `apply`, `summary` all work on them."""
from funconv.models.alexnet import alexnet
from funconv.models.lenet import lenet5
from funconv.models.mobilenet import mobilenet_v1
from funconv.models.small import small_cnn
from funconv.models.resnet import (cifar_resnet, resnet, resnet18, resnet20, resnet32, resnet34, resnet44, resnet50,
                                   resnet56, resnet101, resnet110, resnet152)
from funconv.models.vgg import vgg, vgg11, vgg13, vgg16, vgg19
