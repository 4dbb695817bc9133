"""Seeing what a convolutional network does: its filters, the activation maps of an input, classic filters on a
photograph, saliency maps and receptive fields.

`funconv.viz.arrays` computes each as arrays (tested on them); the `plot_*` functions of `funconv.viz.plot` draw
them with matplotlib and return the `Figure` (saved too with `path=`). Models are applied to one example, in
evaluation mode, and looked into with `funconv.capture`: any model built with the combinators, by layer path.

Example:
  >>> from funconv import viz
  >>> maps = viz.activation_maps(net, params, state, image)        # {path: (*spatial, C)} for each convolution
  >>> viz.plot_activation_maps(maps, image, path="maps.png")
"""
from funconv.viz.arrays import (CONV_TYPES, FilterGrid, Saliency, activation_maps, apply_kernel, classic_kernels,
                                conv_layers, field_box, filter_grid, measured_field, receptive_field_box,
                                sample_photograph, saliency)
from funconv.viz.plot import (plot_activation_maps, plot_classic_kernels, plot_filters, plot_receptive_field,
                              plot_saliency)
