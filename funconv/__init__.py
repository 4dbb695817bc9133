"""funconv: a functional convolutional-network library for JAX.

Layers are `Layer(init, apply)` pairs of pure functions applied to one example; `batched`
maps them over a batch; combinators compose them; `funconv.ops` holds the convolution and
pooling they are built on, made from lax primitives (never `lax.conv_general_dilated`).
"""

import importlib

from funconv.blocks import SeparableConv
from funconv.batching import batched, per_example_grads
from funconv.host_memory import reuse_host_memory
from funconv.combinators import FanInConcat, FanInSum, FanOut, named, parallel, residual, serial, shape_dependent
from funconv.introspect import by_name, capture, from_stax, param_names, receptive_field, set_by_name, summary
from funconv.layers import (
  AdaptiveAvgPool,
  AvgPool,
  BatchNorm,
  Conv,
  ConvTranspose,
  Dense,
  DepthwiseConv,
  Dropout,
  Elu,
  Flatten,
  Gelu,
  GlobalAvgPool,
  GlobalMaxPool,
  GroupNorm,
  Identity,
  L2Pool,
  Layer,
  LayerNorm,
  LeakyRelu,
  LogSoftmax,
  MaxPool,
  Relu,
  Reshape,
  Selu,
  Sigmoid,
  Softmax,
  Softplus,
  SumPool,
  Tanh,
  elementwise,
  layer,
)
from funconv import data, models, ops

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
  "FanInConcat",
  "FanInSum",
  "FanOut",
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
  "SeparableConv",
  "Sigmoid",
  "Softmax",
  "Softplus",
  "SumPool",
  "Tanh",
  "batched",
  "by_name",
  "capture",
  "data",
  "elementwise",
  "layer",
  "from_stax",
  "models",
  "named",
  "ops",
  "parallel",
  "param_names",
  "per_example_grads",
  "receptive_field",
  "residual",
  "reuse_host_memory",
  "serial",
  "set_by_name",
  "shape_dependent",
  "summary",
  "train",
  "viz",
]


def __getattr__(name):
  """`funconv.train` and `funconv.viz` import on first use: they bring optax and matplotlib, which would double
  the time `import funconv` takes."""
  if name in ("train", "viz"):
    return importlib.import_module(f"funconv.{name}")
  raise AttributeError(f"module 'funconv' has no attribute {name!r}")
