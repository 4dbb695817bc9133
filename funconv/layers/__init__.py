"""funconv's layers: `Layer(init, apply)` pairs of pure functions, one example at a time."""

from funconv.layers.base import Layer, layer
from funconv.layers.conv import Conv, ConvTranspose, DepthwiseConv
from funconv.layers.core import (
  Dense,
  Dropout,
  Elu,
  Flatten,
  Gelu,
  Identity,
  LeakyRelu,
  LogSoftmax,
  Relu,
  Reshape,
  Selu,
  Sigmoid,
  Softmax,
  Softplus,
  Tanh,
  elementwise,
)
from funconv.layers.norm import BatchNorm, GroupNorm, LayerNorm
from funconv.layers.pool import AdaptiveAvgPool, AvgPool, GlobalAvgPool, GlobalMaxPool, L2Pool, MaxPool, SumPool

__all__ = [
  "AdaptiveAvgPool",
  "AvgPool",
  "BatchNorm",
  "Conv",
  "ConvTranspose",
  "Dense",
  "DepthwiseConv",
  "Dropout",
  "Elu",
  "Flatten",
  "Gelu",
  "GlobalAvgPool",
  "GlobalMaxPool",
  "GroupNorm",
  "Identity",
  "L2Pool",
  "Layer",
  "LayerNorm",
  "LeakyRelu",
  "LogSoftmax",
  "MaxPool",
  "Relu",
  "Reshape",
  "Selu",
  "Sigmoid",
  "Softmax",
  "Softplus",
  "SumPool",
  "Tanh",
  "elementwise",
  "layer",
]
