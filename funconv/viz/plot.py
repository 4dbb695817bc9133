"""Figures of `funconv.viz.arrays`' results, drawn with matplotlib.

Each `plot_*` function returns a `matplotlib.figure.Figure` (made without pyplot, so no window opens and any
backend works; a notebook shows it) with a title and labelled panels, and saves it where `path` is given (the
format from the suffix: `.png`, `.pdf`, `.svg`). Only 2-D images are drawn: `(H, W, C)` inputs and activations.
Needs matplotlib.
"""

import fractions
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from funconv.viz.arrays import apply_kernel, classic_kernels, filter_grid, sample_photograph

DIVERGING = "RdBu_r"  # negative blue, zero white, positive red: for weights and signed responses
SEQUENTIAL = "viridis"


def _figure(cols, rows, panel, extra=(0.0, 0.0)):
  """A constrained-layout figure sized for `rows x cols` panels of `panel` inches (a number: square; or (width,
  height)), plus `extra` inches (width, height) for titles, labels and colour bars."""
  width, height = (panel, panel) if np.ndim(panel) == 0 else panel
  return Figure(figsize=(cols * width + extra[0], rows * height + extra[1]), layout="constrained")


def _panel(shape, width):
  """A panel `width` inches wide for an image of `shape` `(H, W, ...)`: as tall as the image's aspect makes it."""
  return width, width * shape[0] / shape[1]


def _finish(fig, path):
  if path is not None:
    fig.savefig(path, dpi=120)
  return fig


def _bare(ax):
  """An image panel: no ticks (pixel indices say nothing here), the frame kept."""
  ax.set_xticks([])
  ax.set_yticks([])


def _image(x, what, op):
  """`x` `(H, W, C)` as something `imshow` draws: RGB scaled into [0, 1] where it leaves it, else grey (the
  channel mean where C is not 1 or 3); and the colour map."""
  x = np.asarray(x, np.float32)
  if x.ndim != 3:
    raise ValueError(f"{op}: {what} must be an image (H, W, C), got shape {x.shape}")
  if x.shape[-1] != 3:
    return x.mean(axis=-1), "gray"
  low, high = float(x.min()), float(x.max())
  if low < 0 or high > 1:
    x = (x - low) / max(high - low, 1e-12)
  return x, None


def _grid(n, max_cols=None):
  """Columns and rows for `n` panels: a square grid, or at most `max_cols` columns."""
  cols = min(n, max_cols or math.ceil(math.sqrt(n)))
  return cols, math.ceil(n / cols)


def plot_filters(W, rgb=None, max_filters=32, max_channels=8, title=None, path=None):
  """A layer's filters: a grid of the kernel `W` `(kh, kw, C_in, C_out)` (`(k, C_in, C_out)` for 1-D).

  With 3 input channels (a first layer on colour images; `rgb` as in `filter_grid`) each filter is one RGB
  image, scaled on its own, a zero weight grey; with one input channel (grey images) each filter is a grey image,
  all on one scale with a colour bar. Otherwise one row per filter and one column per input channel,
  in a diverging colour map over the kernel's symmetric range (white is 0), with a colour bar. At most
  `max_filters` filters and `max_channels` input channels are drawn (the first ones; the title says so).

  Args:
    W: the kernel, a floating array (a `Conv` layer's `params[0]`).
    rgb: draw each filter as one RGB image; None (default): where `C_in == 3`.
    max_filters: the most filters drawn (default 32).
    max_channels: the most input channels drawn per filter (default 8).
    title: the figure's title (default: one saying what is drawn).
    path: where given, the figure is saved there too (default None).

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    TypeError: `W` is a tuple (a layer's whole params) or not floating (as `funconv.viz.filter_grid`).
    ValueError: `W` is not a non-empty 3-D or 4-D kernel; `rgb=True` without 3 input channels.

  Examples:
    >>> import pathlib
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Conv(6, 3))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> fig = fc.viz.plot_filters(params[0][0], path="conv1.png")           # 4 grey 3x3 filters
    >>> len(fig.axes), pathlib.Path("conv1.png").exists()
    (5, True)
    >>> fig = fc.viz.plot_filters(params[2][0], max_filters=2, max_channels=3)   # 2 filters x 3 input channels
    >>> type(fig).__name__
    'Figure'
  """
  grid = filter_grid(W, rgb)
  window = "x".join(map(str, grid.tiles.shape[1:3] if grid.rgb else grid.tiles.shape[2:]))
  n_out = grid.tiles.shape[0]
  shown = min(n_out, max_filters)
  if grid.rgb:
    cols, rows = _grid(shown)
    fig = _figure(cols, rows, 1.1, (0.2, 0.6))
    for i, ax in enumerate(fig.subplots(rows, cols, squeeze=False).flat):
      _bare(ax)
      if i < shown:
        ax.imshow(grid.tiles[i], interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=8)
      else:
        ax.set_axis_off()
    heading = f"{n_out} RGB filters {window}\n(each scaled to its own range; grey = 0)"
  elif grid.tiles.shape[1] == 1:
    cols, rows = _grid(shown)
    fig = _figure(cols, rows, 1.1, (1.2, 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
      _bare(ax)
      if i < shown:
        im = ax.imshow(grid.tiles[i, 0], cmap="gray", vmin=-grid.vmax, vmax=grid.vmax, interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=8)
      else:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    heading = f"{n_out} filters {window} on one input channel, as grey images\n(one scale for all; mid-grey = 0)"
  else:
    n_in = grid.tiles.shape[1]
    cols, rows = min(n_in, max_channels), shown
    fig = _figure(cols, rows, 0.9, (1.4, 0.7))
    axes = fig.subplots(rows, cols, squeeze=False)
    for o in range(rows):
      for c in range(cols):
        ax = axes[o, c]
        _bare(ax)
        im = ax.imshow(
          grid.tiles[o, c],
          cmap=DIVERGING,
          vmin=-grid.vmax,
          vmax=grid.vmax,
          interpolation="nearest",
          aspect="auto" if grid.tiles.shape[2] == 1 else "equal",
        )
        if o == 0:
          ax.set_title(f"in {c}", fontsize=8)
        if c == 0:
          ax.set_ylabel(f"filter {o}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=min(1.0, 4 / rows + 0.2), label="weight")
    heading = f"{n_out} filters {window} over {n_in} input channels\n(rows: filters; columns: input channels)"
  cut = ([f"first {shown} filters"] if shown < n_out else []) + (
    [f"first {cols} input channels"] if not grid.rgb and cols < grid.tiles.shape[1] else []
  )
  if cut:
    heading += "\n" + ", ".join(cut) + " shown"
  fig.suptitle(title or heading, fontsize=11)
  return _finish(fig, path)


def plot_activation_maps(maps, x=None, max_channels=8, title=None, path=None):
  """The activation maps of one input: one row per layer of `maps` (from `activation_maps`), one panel per
  channel (the first `max_channels`), with the input `x` `(H, W, C)` on the left where given.

  A layer's panels share one colour scale, with its colour bar, so its channels compare; each row is labelled
  with the layer's path and output shape.

  Args:
    maps: a non-empty dict `{path: activation}`, each activation `(H', W', C')` (from `activation_maps`).
    x: the input `(H, W, C)`, drawn on the left (RGB where `C == 3`, else the channel mean in grey); default
      None: not drawn.
    max_channels: the most channels drawn per layer (default 8).
    title: the figure's title (default: one saying what is drawn).
    path: where given, the figure is saved there too (default None).

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    ValueError: `maps` is not a non-empty dict, or an activation is not `(H, W, C)`; `x` is not `(H, W, C)`.

  Examples:
    >>> import pathlib
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Conv(6, 3, strides=2))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> image = jnp.asarray(fc.data.digits().x_train[0])                    # an 8x8 digit (8, 8, 1)
    >>> maps = fc.viz.activation_maps(net, params, state, image)
    >>> {path: a.shape for path, a in maps.items()}
    {'0': (6, 6, 4), '2': (2, 2, 6)}
    >>> fig = fc.viz.plot_activation_maps(maps, image, max_channels=2, path="maps.png")
    >>> pathlib.Path("maps.png").exists()
    True
  """
  op = "plot_activation_maps"
  if not isinstance(maps, dict) or not maps:
    raise ValueError(f"{op}: maps must be a non-empty dict {{path: activation}} (from activation_maps), got {maps!r}")
  maps = {path: np.asarray(a, np.float32) for path, a in maps.items()}
  for layer, a in maps.items():
    if a.ndim != 3:
      raise ValueError(f"{op}: activation {layer!r} must be 2-D maps (H, W, C), got shape {a.shape}")
  cols = min(max(a.shape[-1] for a in maps.values()), max_channels)
  offset = 0 if x is None else 1
  rows = len(maps)
  fig = _figure(cols + offset, rows, _panel(next(iter(maps.values())).shape, 1.5), (0.8, 0.6))
  spec = fig.add_gridspec(rows, cols + offset)
  if x is not None:
    image, cmap = _image(x, "x", op)
    ax = fig.add_subplot(spec[:, 0])
    ax.imshow(image, cmap=cmap)
    ax.set_title(f"input {tuple(np.shape(x))}", fontsize=9)
    _bare(ax)
  for r, (layer, a) in enumerate(maps.items()):
    axes = [fig.add_subplot(spec[r, offset + c]) for c in range(min(cols, a.shape[-1]))]
    low, high = float(a.min()), float(a.max())
    for c, ax in enumerate(axes):
      im = ax.imshow(a[..., c], cmap=SEQUENTIAL, vmin=low, vmax=high, interpolation="nearest")
      _bare(ax)
      if r == 0:
        ax.set_title(f"channel {c}", fontsize=8)
    axes[0].set_ylabel(f"{layer}\n{'x'.join(map(str, a.shape))}", fontsize=9)
    fig.colorbar(im, ax=axes, aspect=8, pad=0.01).ax.tick_params(labelsize=7)
  more = f" (first {cols})" if any(a.shape[-1] > cols for a in maps.values()) else ""
  fig.suptitle(
    title or f"Activation maps of one input: a row per layer (path, output shape), a panel per channel{more}",
    fontsize=11,
  )
  return _finish(fig, path)


def _fraction(value):
  """A kernel weight as a short exact label: `1/9`, `-4`, `0.123` where no small fraction is it."""
  f = fractions.Fraction(float(value)).limit_denominator(16)
  return str(f) if abs(float(f) - value) < 1e-6 else f"{value:.3g}"


def _kernel_inset(ax, kernel):
  """`kernel` drawn in the lower-left corner of `ax`, its weights written in its cells."""
  h, w = kernel.shape
  inset = ax.inset_axes([0.02, 0.03, 0.3, 0.42])
  # Twice the largest weight as the colour range: pale cells, the weights written on them readable.
  vmax = 2 * float(np.abs(kernel).max()) or 1.0
  inset.imshow(kernel, cmap=DIVERGING, vmin=-vmax, vmax=vmax)
  for (i, j), v in np.ndenumerate(kernel):
    inset.text(j, i, _fraction(v), ha="center", va="center", fontsize=6.5 if max(h, w) <= 3 else 5)
  _bare(inset)


def plot_classic_kernels(image=None, kernels=None, title=None, path=None):
  """Classic image-processing kernels applied with `funconv.ops.conv` (`apply_kernel`) to a photograph.

  `image` `(H, W, C)` (default: `sample_photograph(0, downscale=2)`); `kernels` a dict `{name: (kh, kw)}`
  (default: `classic_kernels()`). One panel per kernel, its weights drawn in the corner. Kernels that keep a
  flat region's brightness (their weights sum to 1) show the filtered image; edge detectors (summing to 0) show
  the response, averaged over channels, in a diverging colour map with a colour bar. Where both `"sobel x"` and
  `"sobel y"` are there, a last panel shows the gradient magnitude `sqrt(gx^2 + gy^2)`.

  Args:
    image: `(H, W, C)`, floating (default None: `sample_photograph(0, downscale=2)`, which needs scikit-learn).
    kernels: a dict `{name: (kh, kw) kernel}` (default None: `classic_kernels()`).
    title: the figure's title (default: one saying what is drawn).
    path: where given, the figure is saved there too (default None).

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    ValueError: `image` is not `(H, W, C)`; a kernel `apply_kernel` rejects.

  Examples:
    >>> import pathlib
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> edge = jnp.zeros((16, 16, 3)).at[:, 8:].set(1.0)                   # dark left, bright right
    >>> sobel = {name: k for name, k in fc.viz.classic_kernels().items() if name.startswith("sobel")}
    >>> fig = fc.viz.plot_classic_kernels(edge, sobel, path="kernels.png")
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]
    ['sobel x', 'sobel y', 'edge magnitude (Sobel)']
  """
  op = "plot_classic_kernels"
  image = sample_photograph(0, downscale=2) if image is None else np.asarray(image, np.float32)
  _image(image, "image", op)  # checks its shape
  kernels = classic_kernels() if kernels is None else kernels
  responses = {name: np.asarray(apply_kernel(image, k)) for name, k in kernels.items()}
  if "sobel x" in responses and "sobel y" in responses:
    responses["edge magnitude (Sobel)"] = np.hypot(responses["sobel x"], responses["sobel y"]).mean(axis=-1)
  cols, rows = _grid(len(responses), max_cols=4)
  fig = _figure(cols, rows, _panel(image.shape, 3.6), (0.4, 0.8))
  axes = list(fig.subplots(rows, cols, squeeze=False).flat)
  for ax in axes[len(responses) :]:
    ax.set_axis_off()
  for ax, (name, y) in zip(axes, responses.items()):
    _bare(ax)
    ax.set_title(name)
    if name not in kernels:
      fig.colorbar(ax.imshow(y, cmap="magma"), ax=ax, shrink=0.8, label="|gradient|")
      continue
    kernel = np.asarray(kernels[name], np.float32)
    if abs(float(kernel.sum())) < 1e-6:
      signed = y.mean(axis=-1)
      # The 99.5th percentile: a few saturated pixels keep the rest of the edges visible.
      vmax = float(np.percentile(np.abs(signed), 99.5)) or 1.0
      fig.colorbar(ax.imshow(signed, cmap=DIVERGING, vmin=-vmax, vmax=vmax), ax=ax, shrink=0.8, label="response")
    else:
      shown, cmap = _image(np.clip(y, 0, 1), "image", op)
      ax.imshow(shown, cmap=cmap)
    _kernel_inset(ax, kernel)
  fig.suptitle(title or "Classic image filters: cross-correlation with funconv.ops.conv, reflected borders")
  return _finish(fig, path)


def plot_saliency(x, saliency_map, class_index=None, title=None, path=None):
  """A saliency map next to its input: the input `x` `(H, W, C)`, the map `(H, W)` (or a `Saliency`) with a colour
  bar, and the map over a grey copy of the input.

  Args:
    x: the input `(H, W, C)`.
    saliency_map: `(H, W)`, or a `Saliency` (from `saliency`).
    class_index: the class the map is for, named in the title (default None).
    title: the figure's title (default: one saying what is drawn).
    path: where given, the figure is saved there too (default None).

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    ValueError: `x` is not `(H, W, C)`; the map's shape is not `(H, W)`.

  Examples:
    >>> import pathlib
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> image = jnp.asarray(fc.data.digits().x_train[0])
    >>> s = fc.viz.saliency(net, params, state, image, 3)
    >>> fig = fc.viz.plot_saliency(image, s, class_index=3, path="saliency.png")
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['input', 'saliency', 'saliency over the input']
  """
  op = "plot_saliency"
  image, cmap = _image(x, "x", op)
  heat = np.asarray(getattr(saliency_map, "map", saliency_map), np.float32)
  if heat.shape != image.shape[:2]:
    raise ValueError(f"{op}: saliency_map must have x's spatial shape {image.shape[:2]}, got {heat.shape}")
  grey = image if image.ndim == 2 else image.mean(axis=-1)
  fig = _figure(3, 1, _panel(image.shape, 3.4), (0.8, 0.8))
  axes = fig.subplots(1, 3)
  axes[0].imshow(image, cmap=cmap)
  axes[0].set_title("input")
  fig.colorbar(
    axes[1].imshow(heat, cmap="inferno", vmin=0), ax=axes[1], shrink=0.8, label="max over channels of |d score / d x|"
  )
  axes[1].set_title("saliency")
  axes[2].imshow(grey, cmap="gray")
  axes[2].imshow(heat, cmap="inferno", vmin=0, alpha=0.6)
  axes[2].set_title("saliency over the input")
  for ax in axes:
    _bare(ax)
  of = "the class score" if class_index is None else f"the score of class {class_index}"
  fig.suptitle(title or f"Saliency: gradient of {of} with respect to the input")
  return _finish(fig, path)


def plot_receptive_field(x, box, mask=None, unit=None, title=None, path=None):
  """An output unit's receptive field on the input `x` `(H, W, C)`: the `box` from `receptive_field_box` as a
  rectangle and, where given, the `mask` from `measured_field` (pixels whose gradient is non-zero) shaded.

  Args:
    x: the input `(H, W, C)`.
    box: `((first_row, last_row), (first_col, last_col))`, inclusive (from `receptive_field_box`).
    mask: a boolean `(H, W)` (from `measured_field`); default None: not drawn.
    unit: `(layer, position)` naming the unit in the title, e.g. `("2", (3, 4))` for layer `"2"` at position
      `(3, 4)`; default None.
    title: the figure's title (default: one saying what is drawn).
    path: where given, the figure is saved there too (default None).

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    ValueError: `x` is not `(H, W, C)`; `box` is not two pairs; `mask`'s shape is not `(H, W)`.

  Examples:
    >>> import pathlib
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(4, 3), fc.Relu, fc.Conv(6, 3, strides=2))
    >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
    >>> image = jnp.asarray(fc.data.digits().x_train[0])
    >>> box = fc.viz.receptive_field_box(net, image.shape, "2", (1, 1))
    >>> mask = fc.viz.measured_field(net, params, state, image, "2", (1, 1))
    >>> box
    ((2, 6), (2, 6))
    >>> fig = fc.viz.plot_receptive_field(image, box, mask, unit=("2", (1, 1)), path="field.png")
    >>> fig.axes[0].get_title()
    "Receptive field of unit (1, 1) of layer '2'"
  """
  op = "plot_receptive_field"
  image, cmap = _image(x, "x", op)
  if len(box) != 2 or not all(len(pair) == 2 for pair in box):
    raise ValueError(f"{op}: box must be ((first_row, last_row), (first_col, last_col)), got {box!r}")
  (r0, r1), (c0, c1) = box
  fig = _figure(1, 1, _panel(image.shape, 5.0), (0.5, 1.4))
  ax = fig.subplots()
  ax.imshow(image, cmap=cmap, alpha=0.75)
  handles = []
  if mask is not None:
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
      raise ValueError(f"{op}: mask must have x's spatial shape {image.shape[:2]}, got {mask.shape}")
    shade = np.zeros((*mask.shape, 4), np.float32)
    shade[mask] = (1.0, 0.5, 0.0, 0.55)
    ax.imshow(shade)
    handles.append(Patch(color=(1.0, 0.5, 0.0, 0.55), label=f"measured: gradient != 0 ({int(mask.sum())} pixels)"))
  ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, edgecolor="cyan", linewidth=2))
  handles.append(
    Patch(
      fill=False,
      edgecolor="cyan",
      linewidth=2,
      label=f"computed: rows {r0}-{r1}, columns {c0}-{c1} ({r1 - r0 + 1}x{c1 - c0 + 1})",
    )
  )
  fig.legend(handles=handles, loc="outside lower center", fontsize=9, frameon=False)
  ax.set_xlabel("column")
  ax.set_ylabel("row")
  of = "an output unit" if unit is None else f"unit {tuple(unit[1])} of layer {unit[0]!r}"
  ax.set_title(title or f"Receptive field of {of}")
  return _finish(fig, path)
