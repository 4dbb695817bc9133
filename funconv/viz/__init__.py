"""Seeing what a convolutional network does: its filters, the activation maps of an input, classic filters on a
photograph, saliency maps and receptive fields.

`funconv.viz.arrays` computes each as arrays (tested on them); the `plot_*` functions of `funconv.viz.plot` draw
them with matplotlib and return the `Figure` (saved too with `path=`). Models are applied to one example, in
evaluation mode, and looked into with `funconv.capture`: any model built with the combinators, by layer path.

`CONV_TYPES`, a tuple (so without a docstring of its own), is `("Conv", "ConvTranspose", "DepthwiseConv")`: the
layer types that `conv_layers` and `activation_maps` count as convolutions.

Examples:
  >>> import pathlib
  >>> import matplotlib; matplotlib.use("Agg")
  >>> import jax, jax.numpy as jnp
  >>> import funconv as fc
  >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Conv(6, 3, strides=2))
  >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
  >>> image = jnp.asarray(fc.data.digits().x_train[0])               # an 8x8 digit (8, 8, 1)
  >>> maps = fc.viz.activation_maps(net, params, state, image)       # {path: (*spatial, C)} for each convolution
  >>> {path: a.shape for path, a in maps.items()}
  {'0': (6, 6, 4), '2': (2, 2, 6)}
  >>> fig = fc.viz.plot_activation_maps(maps, image, max_channels=2, path="maps.png")
  >>> pathlib.Path("maps.png").exists()
  True
"""

from funconv.viz.arrays import (
  CONV_TYPES,
  FilterGrid,
  Saliency,
  activation_maps,
  apply_kernel,
  classic_kernels,
  conv_layers,
  field_box,
  filter_grid,
  measured_field,
  receptive_field_box,
  sample_photograph,
  saliency,
)
from funconv.viz.plot import (
  plot_activation_maps,
  plot_classic_kernels,
  plot_filters,
  plot_receptive_field,
  plot_saliency,
)

__all__ = [
  "CONV_TYPES",
  "FilterGrid",
  "Saliency",
  "activation_maps",
  "apply_kernel",
  "classic_kernels",
  "conv_layers",
  "field_box",
  "filter_grid",
  "measured_field",
  "plot_activation_maps",
  "plot_classic_kernels",
  "plot_filters",
  "plot_receptive_field",
  "plot_saliency",
  "receptive_field_box",
  "saliency",
  "sample_photograph",
]
