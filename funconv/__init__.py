"""funconv: a functional convolutional-network library for JAX.

Layers are `Layer(init, apply)` pairs of pure functions applied to one example; `batched`
maps them over a batch; combinators compose them; `funconv.ops` holds the convolution and
pooling they are built on, made from lax primitives (never `lax.conv_general_dilated`).
"""
from funconv import ops
from funconv.batching import batched, per_example_grads
from funconv.combinators import FanInConcat, FanInSum, FanOut, named, parallel, residual, serial, shape_dependent
from funconv.inspect import by_name, capture, from_stax, param_names, receptive_field, set_by_name, summary
from funconv.layers import (AdaptiveAvgPool, AvgPool, BatchNorm, Conv, ConvTranspose, Dense, DepthwiseConv, Dropout,
                            Elu, Flatten, Gelu, GlobalAvgPool, GlobalMaxPool, GroupNorm, Identity, L2Pool, Layer, LayerNorm,
                            LeakyRelu, LogSoftmax, MaxPool, Relu, Reshape, Selu, SeparableConv, Sigmoid, Softmax,
                            Softplus, SumPool, Tanh, elementwise)
from funconv import models
