"""What the figures show, as arrays: filters, activation maps, classic kernels on a photograph, saliency and
receptive fields. Nothing here draws; `funconv.viz.plot` does, from these.

Models are applied to one example (no batch axis) in evaluation mode (`train=False`), and intermediate outputs
come from `funconv.capture`, so any model built with the combinators works as it is, by layer path.

`CONV_TYPES` (a tuple, so without a docstring of its own) is `("Conv", "ConvTranspose", "DepthwiseConv")`: the
layer types, as `funconv.summary` names them, that `conv_layers` and `activation_maps` count as convolutions.

Examples:
  >>> import funconv as fc
  >>> fc.viz.CONV_TYPES
  ('Conv', 'ConvTranspose', 'DepthwiseConv')
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funconv import ops
from funconv.introspect import capture, receptive_field, summary
from funconv.layers.base import UNKNOWN, check_layer
from funconv.ops.shapes import check_inexact, positive_int

CONV_TYPES = ("Conv", "ConvTranspose", "DepthwiseConv")
"""The layer types `conv_layers` and `activation_maps` take for convolutions (a `SeparableConv` is two of them).

Examples:
  >>> import funconv as fc
  >>> "Conv" in fc.viz.CONV_TYPES
  True
"""


class FilterGrid(NamedTuple):
  """`filter_grid`'s result: the tiles to draw, their colour range, and whether they are RGB images.

  Attributes:
    tiles: float32 NumPy array, `(C_out, kh, kw, 3)` RGB images in [0, 1] where `rgb`, else the raw weights
      `(C_out, C_in, kh, kw)`.
    vmax: `max|W|` over the whole kernel, a float: the symmetric colour range `(-vmax, vmax)` of raw tiles.
    rgb: whether `tiles` are RGB images, a bool.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> grid = fc.viz.filter_grid(jnp.ones((3, 3, 2, 4)))
    >>> grid.tiles.shape, grid.vmax, grid.rgb
    ((4, 2, 3, 3), 1.0, False)
  """

  tiles: np.ndarray
  vmax: float
  rgb: bool


class Saliency(NamedTuple):
  """`saliency`'s result: the saliency map and the gradient it is taken from.

  Attributes:
    map: `(*spatial,)`, the largest |gradient| over channels, a JAX array in `x`'s dtype.
    gradient: d score / d x, `x`'s shape `(*spatial, C)`, a JAX array.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Flatten, fc.Dense(2))
    >>> _, params, state = net.init(jax.random.key(0), (4, 4, 3))
    >>> s = fc.viz.saliency(net, params, state, jnp.ones((4, 4, 3)), 1)
    >>> s.map.shape, s.gradient.shape
    ((4, 4), (4, 4, 3))
  """

  map: jax.Array
  gradient: jax.Array


def filter_grid(W, rgb=None):
  """A convolution kernel as tiles to draw: one RGB image per filter, or one image per filter and input channel.

  Args:
    W: a kernel `(kh, kw, C_in, C_out)` (HWIO, as `Conv`'s params hold it), or `(k, C_in, C_out)` for a 1-D
      convolution, drawn as `1 x k` images.
    rgb: draw each filter as one RGB image; None (default) does so where `C_in == 3`, as for a first layer
      that sees colour images.

  Returns:
    `FilterGrid(tiles, vmax, rgb)`. RGB: `tiles` `(C_out, kh, kw, 3)`, each filter scaled on its own to `[0, 1]`
    with a zero weight at mid-grey 0.5 (`0.5 + 0.5 W / max|W|`). Otherwise `tiles` `(C_out, C_in, kh, kw)`, the
    raw weights, for a diverging colour map over `(-vmax, vmax)`, `vmax = max|W|` over the whole kernel so that
    tiles compare. float32 NumPy arrays.

  Raises:
    TypeError: `W` is a tuple (a layer's whole params) or not floating.
    ValueError: `W` is not 3-D or 4-D, or has an empty axis; `rgb=True` without 3 input channels.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> _, (W, b), _ = fc.Conv(16, (5, 5)).init(jax.random.key(0), (32, 32, 3))
    >>> grid = fc.viz.filter_grid(W)                         # 3 input channels: RGB tiles
    >>> grid.tiles.shape, grid.rgb, float(grid.tiles.min()) >= 0.0
    ((16, 5, 5, 3), True, True)
    >>> fc.viz.filter_grid(W, rgb=False).tiles.shape         # one tile per filter and input channel
    (16, 3, 5, 5)
  """
  if isinstance(W, tuple):
    raise TypeError(
      f"filter_grid: W must be a kernel array, got a tuple of {len(W)} (a layer's params (W, b)? pass params[0])"
    )
  check_inexact(W, "filter_grid", "W", complex_ok=False)
  shape = np.shape(W)
  if len(shape) not in (3, 4) or 0 in shape:
    raise ValueError(
      f"filter_grid: W must be a 2-D kernel (kh, kw, C_in, C_out) or a 1-D one (k, C_in, C_out), "
      f"non-empty, got shape {shape}"
    )
  W = np.asarray(W, np.float32).reshape((1,) * (4 - len(shape)) + shape)
  rgb = W.shape[2] == 3 if rgb is None else bool(rgb)
  if rgb and W.shape[2] != 3:
    raise ValueError(f"filter_grid: rgb=True needs 3 input channels, got W of shape {W.shape}")
  vmax = float(np.abs(W).max())
  if not rgb:
    return FilterGrid(W.transpose(3, 2, 0, 1), vmax, False)
  tiles = W.transpose(3, 0, 1, 2)
  scale = np.abs(tiles).max(axis=(1, 2, 3), keepdims=True)
  return FilterGrid(0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1), vmax, True)


def _rows(model, input_shape, op):
  check_layer(model, op, "model")
  return summary(model, input_shape, print_fn=None)["rows"]


def conv_layers(model, input_shape):
  """The paths of `model`'s convolutions (`Conv`, `ConvTranspose`, `DepthwiseConv`: `CONV_TYPES`) in the order
  they run, for an input of `input_shape` (one example): the layers `activation_maps` shows by default, and
  what its integer indices count.

  Args:
    model: a `Layer`.
    input_shape: one example's shape `(*spatial, C)`.

  Returns:
    A list of paths (strings), as `funconv.summary` shows them.

  Raises:
    TypeError: `model` is not a `Layer`.
    ValueError: `input_shape` does not fit the model (from its `init`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> fc.viz.conv_layers(fc.serial(fc.Conv(8, 3), fc.Relu, fc.named("head", fc.Conv(4, 3))), (28, 28, 1))
    ['0', 'head']
  """
  return [row["name"] for row in _rows(model, input_shape, "conv_layers") if row["type"] in CONV_TYPES]


def _check_example(x, op):
  check_inexact(x, op, "x", complex_ok=False)
  if jnp.ndim(x) < 2:
    raise ValueError(f"{op}: x must be one example (*spatial, C) with no batch axis, got shape {jnp.shape(x)}")
  return jnp.asarray(x)


def _layer_outputs(model, params, state, x, rows):
  """Every layer's output for one example `x`, in evaluation mode, by path (`funconv.capture`)."""
  (y, outputs), _ = capture(model.apply)(params, state, x, train=False)
  # An unnamed model that is one layer has no path of its own: summary calls it by its type, and its output is y.
  return {rows[0]["name"]: y} if not outputs and len(rows) == 1 else outputs


def activation_maps(model, params, state, x, layers=None):
  """The outputs of `model`'s convolutions for one input: what each layer's filters respond to, and where.

  Args:
    model: any funconv layer (built with `serial`, `parallel`, `named`, ...); it is not rebuilt: outputs come
      from `funconv.capture`.
    params: the model's params, from its `init`.
    state: the model's state, from its `init`.
    x: one example `(*spatial, C)`, no batch axis. The model runs with `train=False`.
    layers: None (default) for every convolution (`conv_layers(model, x.shape)`); or a path, an int, or a list
      of them: paths as `summary` shows them (any layer, not only convolutions: `"3/1"`, `"stage1/block0"`),
      ints index the list of convolutions (`-1` is the last).

  Returns:
    A dict `{path: activation}` in the order asked (by default, the order the convolutions run), each
    activation that layer's output for `x`, `(*spatial', C')`, a JAX array.

  Raises:
    TypeError: `model` is not a `Layer`; `x` is not floating; `layers` is not a path, an int or a list of them.
    ValueError: `x` has fewer than 2 axes; an index out of range of the convolutions; a path the model does not
      have.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Conv(6, 3, strides=2))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> {p: a.shape for p, a in fc.viz.activation_maps(net, params, state, jnp.ones((28, 28, 1))).items()}
    {'0': (26, 26, 4), '2': (12, 12, 6)}
    >>> list(fc.viz.activation_maps(net, params, state, jnp.ones((28, 28, 1)), layers=["1", -1]))
    ['1', '2']
  """
  op = "activation_maps"
  x = _check_example(x, op)
  rows = _rows(model, x.shape, op)
  convs = [row["name"] for row in rows if row["type"] in CONV_TYPES]
  chosen = convs if layers is None else [layers] if isinstance(layers, (str, int, np.integer)) else layers
  if not isinstance(chosen, (list, tuple)):
    raise TypeError(f"{op}: layers must be None, a path, an int or a list of them, got {layers!r}")
  for i, choice in enumerate(chosen):
    if isinstance(choice, bool) or not isinstance(choice, (str, int, np.integer)):
      raise TypeError(
        f"{op}: layers[{i}] must be a layer path (str) or an index into the convolutions (int), got {choice!r}"
      )
    if not isinstance(choice, str) and not -len(convs) <= choice < len(convs):
      raise ValueError(f"{op}: index {choice} is out of range for the model's {len(convs)} convolutions {convs}")
  outputs = _layer_outputs(model, params, state, x, rows)
  chosen = [choice if isinstance(choice, str) else convs[choice] for choice in chosen]
  _check_path(chosen, outputs, op)
  return {path: outputs[path] for path in chosen}


def _check_path(paths, outputs, op):
  for path in paths:
    if path not in outputs:
      raise ValueError(f"{op}: the model has no layer {path!r}; its layers are {list(outputs)}")


def classic_kernels():
  """The 3x3 kernels of image processing, as float32 NumPy arrays `(3, 3)` by name, in this order:

  - `"identity"`: the image itself.
  - `"box blur"`: the mean of the 3x3 neighbourhood; `"gaussian blur"`: its binomial weighting `[1 2 1]^T [1 2 1] / 16`.
    Both sum to 1, so flat regions keep their value.
  - `"sharpen"`: the identity plus the negated Laplacian (sums to 1).
  - `"laplacian"`: second derivative, all directions; `"sobel x"` / `"sobel y"`: first derivative across columns
    (left to right) / rows (top to bottom), smoothed along the other axis. Edge detectors: they sum to 0, so
    flat regions give 0.

  Applied as cross-correlation (`apply_kernel`, `funconv.ops.conv`), as deep learning does: `"sobel x"` is
  positive where the image brightens to the right. A new dict on every call.

  Returns:
    A dict `{name: kernel}`, each kernel a float32 NumPy array `(3, 3)`.

  Examples:
    >>> import funconv as fc
    >>> kernels = fc.viz.classic_kernels()
    >>> list(kernels)
    ['identity', 'box blur', 'gaussian blur', 'sharpen', 'laplacian', 'sobel x', 'sobel y']
    >>> kernels["sobel x"].tolist(), kernels["sobel x"].dtype
    ([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype('float32'))
  """
  binomial = np.array([1.0, 2.0, 1.0])
  laplacian = np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])
  identity = np.zeros((3, 3))
  identity[1, 1] = 1
  kernels = {
    "identity": identity,
    "box blur": np.full((3, 3), 1 / 9),
    "gaussian blur": np.outer(binomial, binomial) / 16,
    "sharpen": identity - laplacian,
    "laplacian": laplacian,
    "sobel x": np.outer(binomial, [-1.0, 0, 1]),
    "sobel y": np.outer([-1.0, 0, 1], binomial),
  }
  return {name: k.astype(np.float32) for name, k in kernels.items()}


def apply_kernel(image, kernel, padding="REFLECT"):
  """`image` `(H, W, C)` filtered channel by channel with the 2-D `kernel` `(kh, kw)`: one depthwise
  `funconv.ops.conv` (`groups=C`), cross-correlation.

  `padding` is that of `funconv.ops.conv`; the default `"REFLECT"` mirrors the image at its borders, so a blur
  keeps a constant image constant and an edge filter sees no edge at the border (`"SAME"` pads with zeros,
  which darkens borders). Returns `(H', W', C)` (`(H, W, C)` for `"REFLECT"` or `"SAME"`), unclipped, in the
  image's floating dtype. Jit-able.

  Raises:
    TypeError: `image` or `kernel` is not floating.
    ValueError: `image` is not `(H, W, C)`; `kernel` is not a non-empty 2-D array; a padding the image
      does not allow (see `funconv.ops.conv`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> edge = jnp.zeros((4, 6, 1)).at[:, 3:].set(1.0)              # dark left half, bright right half
    >>> fc.viz.apply_kernel(edge, fc.viz.classic_kernels()["sobel x"])[0, :, 0].tolist()
    [0.0, 0.0, 4.0, 4.0, 0.0, 0.0]
    >>> image = fc.viz.sample_photograph(downscale=4)               # (106, 160, 3)
    >>> fc.viz.apply_kernel(image, fc.viz.classic_kernels()["box blur"]).shape
    (106, 160, 3)
  """
  op = "apply_kernel"
  check_inexact(image, op, "image", complex_ok=False)
  check_inexact(kernel, op, "kernel", complex_ok=False)
  if jnp.ndim(image) != 3:
    raise ValueError(
      f"{op}: image must have shape (H, W, C) (a grey image: image[..., None]), got shape {jnp.shape(image)}"
    )
  if jnp.ndim(kernel) != 2 or 0 in jnp.shape(kernel):
    raise ValueError(f"{op}: kernel must be a non-empty 2-D array (kh, kw), got shape {jnp.shape(kernel)}")
  channels = jnp.shape(image)[-1]
  kernel = jnp.asarray(kernel, jnp.result_type(image))
  w = jnp.broadcast_to(kernel[:, :, None, None], (*kernel.shape, 1, channels))
  return ops.conv(image, w, padding=padding, groups=channels)


@functools.lru_cache(maxsize=None)
def _sample_images():
  from sklearn.datasets import load_sample_images  # scikit-learn only where a photograph is wanted

  return tuple(load_sample_images().images)


def sample_photograph(index=0, downscale=1):
  """One of scikit-learn's two sample photographs (`sklearn.datasets.load_sample_images`, 427 x 640, RGB):
  `index` 0 is a Chinese temple, 1 a flower.

  Returns float32 `(427 // downscale, 640 // downscale, 3)` in `[0, 1]`: each pixel of the result the mean of a
  `downscale x downscale` block (a box filter, so no aliasing), the last rows and columns cropped where they do
  not fill a block. A NumPy array. Needs scikit-learn (the photographs ship with it: nothing is downloaded).

  Raises:
    ValueError: `index` is not 0 or 1; `downscale` larger than the photograph.
    TypeError: `downscale` is not an int (ValueError where it is below 1).

  Examples:
    >>> import funconv as fc
    >>> flower = fc.viz.sample_photograph(1, downscale=4)
    >>> flower.shape, flower.dtype, 0.0 <= float(flower.min()) <= float(flower.max()) <= 1.0
    ((106, 160, 3), dtype('float32'), True)
  """
  if isinstance(index, bool) or index not in (0, 1):
    raise ValueError(f"sample_photograph: index must be 0 (temple) or 1 (flower), got {index!r}")
  d = positive_int(downscale, "downscale", "sample_photograph")
  image = _sample_images()[index]
  h, w = image.shape[0] // d, image.shape[1] // d
  if h == 0 or w == 0:
    raise ValueError(f"sample_photograph: downscale={downscale} is larger than the photograph, {image.shape[:2]}")
  blocks = image[: h * d, : w * d].reshape(h, d, w, d, 3).astype(np.float32)
  return blocks.mean(axis=(1, 3)) / 255


def _input_gradient(fn, x):
  return jax.grad(lambda x: fn(x).astype(jnp.float32))(x)


def saliency(model, params, state, x, class_index):
  """Which input pixels the score of class `class_index` is most sensitive to: the gradient of that score (the
  model's output, a logit or log-probability) with respect to one input `x` (Simonyan et al., 2013), in
  evaluation mode (`train=False`).

  Args:
    model: a model whose output for one example is a vector of class scores `(num_classes,)`.
    params: its params.
    state: its state.
    x: one example `(*spatial, C)`, no batch axis, floating.
    class_index: an int in `[0, num_classes)`.

  Returns:
    `Saliency(map, gradient)`: `gradient` d score / d x, `x`'s shape; `map` `(*spatial,)` its largest absolute
    value over channels. Zero at every pixel outside the receptive field of the score.

  Raises:
    TypeError: `model` is not a `Layer`; `x` is not floating; `class_index` is not an int.
    ValueError: `x` has fewer than 2 axes; the model's output is not a vector; `class_index` out of range.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(8, 3), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> s = fc.viz.saliency(net, params, state, jnp.ones((28, 28, 1)), 3)
    >>> s.map.shape, s.gradient.shape
    ((28, 28), (28, 28, 1))
  """
  op = "saliency"
  check_layer(model, op, "model")
  x = _check_example(x, op)
  scores = jax.eval_shape(lambda x: model.apply(params, state, x, train=False)[0], x)
  if not hasattr(scores, "shape") or len(scores.shape) != 1:
    raise ValueError(
      f"{op}: the model's output must be a vector of class scores (num_classes,) for one example, "
      f"got {jax.tree.map(lambda s: s.shape, scores)} for x of shape {x.shape}"
    )
  if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
    raise TypeError(f"{op}: class_index must be an int, got {class_index!r}")
  if not 0 <= class_index < scores.shape[0]:
    raise ValueError(
      f"{op}: class_index must be in [0, {scores.shape[0]}) for the model's output of shape "
      f"{scores.shape}, got {class_index}"
    )
  gradient = _input_gradient(lambda x: model.apply(params, state, x, train=False)[0][class_index], x)
  return Saliency(jnp.abs(gradient).max(axis=-1), gradient)


def _field_row(model, input_shape, layer, op):
  rows = receptive_field(model, input_shape)
  for row in rows:
    if row["name"] == layer:
      return row
  raise ValueError(f"{op}: the model has no layer {layer!r}; its layers are {[row['name'] for row in rows]}")


def _check_position(position, output_shape, op):
  """`position` as a tuple of ints inside `output_shape[:-1]` (an int: that index on every spatial axis)."""
  spatial = output_shape[:-1]
  if isinstance(position, (int, np.integer)) and not isinstance(position, bool):
    position = (position,) * len(spatial)
  if not (
    isinstance(position, (tuple, list))
    and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in position)
  ):
    raise TypeError(f"{op}: position must be an int or one int per spatial axis, got {position!r}")
  if len(position) != len(spatial) or not all(0 <= p < n for p, n in zip(position, spatial)):
    raise ValueError(
      f"{op}: position must index the layer's output positions {spatial} (one int per spatial axis, "
      f"from 0), got {tuple(position)} for its output of shape {tuple(output_shape)}"
    )
  return tuple(int(p) for p in position)


def receptive_field_box(model, input_shape, layer, position):
  """The input pixels that can affect the output unit at `position` of layer `layer`, from the layers' geometry
  (`funconv.receptive_field`): per spatial axis `(first, last)`, inclusive, clipped to the input.

  Args:
    model: the model, a `Layer`.
    input_shape: one example's shape `(*spatial, C)`.
    layer: the layer's path, as `summary` shows it (`"2"`, `"stage1/block0/conv1"`).
    position: the unit's spatial index in that layer's output, one int per spatial axis (an int: the same on
      every axis).

  Returns:
    A tuple of `(first, last)` int pairs, one per spatial axis. A layer after a Flatten or global pool sees the
    whole input. The field is an upper bound: zero padding, a ReLU at 0 or a max pool's choice can leave parts of
    it without influence (compare `measured_field`).

  Raises:
    TypeError: `model` is not a `Layer`; `position` is not an int or ints.
    ValueError: the model has no layer `layer`; `position` outside the layer's output; a field that cannot be
      known (after a `from_stax` layer).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Conv(4, 3, strides=2))
    >>> fc.viz.receptive_field_box(net, (32, 32, 1), "1", (0, 2))    # 5x5 pixels: rows 0-4, columns 4-8
    ((0, 4), (4, 8))
  """
  op = "receptive_field_box"
  check_layer(model, op, "model")
  return field_box(_field_row(model, input_shape, layer, op), position, input_shape, op)


def field_box(row, position, input_shape, op="field_box"):
  """`receptive_field_box` from one row of `funconv.receptive_field(model, input_shape)`: for many units or
  layers of one model, its geometry computed once.

  Args:
    row: a dict, one row of `funconv.receptive_field(model, input_shape)`.
    position: the unit's spatial index in that layer's output, as in `receptive_field_box`.
    input_shape: the `input_shape` the rows were computed for, `(*spatial, C)`.
    op: the name used in error messages (default `"field_box"`).

  Returns:
    A tuple of `(first, last)` int pairs, one per spatial axis, as `receptive_field_box`.

  Raises:
    TypeError: `position` is not an int or ints.
    ValueError: `position` outside the layer's output; an unknown field (after a `from_stax` layer).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Conv(4, 3, strides=2))
    >>> [fc.viz.field_box(row, 0, (32, 32, 1)) for row in fc.receptive_field(net, (32, 32, 1))]
    [((0, 2), (0, 2)), ((0, 4), (0, 4))]
  """
  spatial = tuple(input_shape)[:-1]
  if row["size"] is None:
    return tuple((0, n - 1) for n in spatial)
  if row["size"] == UNKNOWN:
    raise ValueError(f"{op}: the receptive field of layer {row['name']!r} is unknown (it follows a from_stax layer)")
  position = _check_position(position, row["output_shape"], op)
  box = []
  for p, n, size, jump, start in zip(position, spatial, row["size"], row["jump"], row["start"]):
    centre = start + p * jump
    box.append((max(0, round(centre - (size - 1) / 2)), min(n - 1, round(centre + (size - 1) / 2))))
  return tuple(box)


def measured_field(model, params, state, x, layer, position):
  """The input pixels that do affect the output unit at `position` of layer `layer`, for this input `x`: where
  the gradient of the unit (its channels summed) with respect to `x` is non-zero, in any channel.

  Inside `receptive_field_box`, and equal to it where every path through the field carries gradient (a stack of
  "VALID" convolutions with non-zero weights); smaller where zero padding, a ReLU at 0 or a max pool's choice
  blocks it.

  Args:
    model: the model, a `Layer`.
    params: its params.
    state: its state.
    x: one example `(*spatial, C)`, no batch axis, floating; the model runs with `train=False`.
    layer: the layer's path, as in `receptive_field_box`.
    position: the unit's spatial index in that layer's output, as in `receptive_field_box`.

  Returns:
    A boolean NumPy array `(*spatial,)`.

  Raises:
    TypeError: `model` is not a `Layer`; `x` is not floating; `position` is not an int or ints.
    ValueError: the model has no layer `layer`, or its output is not one array; `position` outside it.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Conv(4, 3))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> mask = fc.viz.measured_field(net, params, state, jnp.ones((8, 8, 1)), "1", (0, 0))
    >>> mask.shape, int(mask.sum())                         # the 5x5 corner: all of the box
    ((8, 8), 25)
  """
  op = "measured_field"
  check_layer(model, op, "model")
  x = _check_example(x, op)
  rows = _rows(model, x.shape, op)
  shapes = jax.eval_shape(lambda x: _layer_outputs(model, params, state, x, rows), x)
  _check_path([layer], shapes, op)
  if not hasattr(shapes[layer], "shape"):
    raise ValueError(f"{op}: layer {layer!r} outputs {jax.tree.map(jnp.shape, shapes[layer])}, not one array")
  position = _check_position(position, shapes[layer].shape, op)
  gradient = _input_gradient(lambda x: _layer_outputs(model, params, state, x, rows)[layer][position].sum(), x)
  return np.asarray(jnp.any(gradient != 0, axis=-1))
