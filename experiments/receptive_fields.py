"""Receptive fields of LeNet-5, VGG-16 and ResNet-50: computed by `fc.receptive_field`, checked by measurement.

The computed field of a unit is the textbook recurrence over the layers' windows, strides, dilations and paddings
(Araujo, Norris and Sim 2019, "Computing receptive fields of convolutional neural networks", Distill, whose Table 1
gives VGG-16's 212 and ResNet-50 v1's 483 pixels). The measurement is the gradient of one unit (the centre of a
layer's output, summed over its channels) with respect to the input: it must be non-zero inside the computed field
(clipped to the input) and nowhere outside. It runs in float64: the Winograd convolution's transforms leave rounding
residues about 1e-6 of the largest value (float32) at inputs of the same tile outside a unit's window, and a deep
layer's true contributions at its field's corners can be as small; in float64 the residues are about 1e-16, and a
pixel counts as measured where its gradient exceeds `THRESHOLD` of the largest. ReLUs and max pools route the
gradient of one input through some paths only, so the measured support is the union over several random inputs; the
gradient's magnitude also shows how much of the field matters (Luo, Li, Urtasun and Zemel 2016: the "effective"
receptive field is a fraction of the theoretical one, concentrated at its centre).

    python experiments/receptive_fields.py [--quick]
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import funconv as fc
import studies
from funconv import models, viz

# Published sizes (Araujo et al. 2019, Table 1); torchvision's ResNet-50 (v1.5) strides in the 3x3 convolution
# of a block, where v1 strides in the first 1x1: its field is smaller.
PUBLISHED = {"VGG-16": ("pool5", 212), "ResNet-50": ("stage4/block2/relu", 483)}
SPATIAL_TYPES = ("Conv", "MaxPool", "AvgPool")
THRESHOLD = 1e-11  # relative to the largest gradient of the unit: well above float64 rounding


def networks(config):
  """(name, model, input shape, the layers measured) for each network; ResNet-50's measured layers are its stem
  and every block's output."""
  size = config["image_size"]
  resnet = models.resnet50()
  blocks = [
    r["name"]
    for r in fc.summary(resnet, (size, size, 3), print_fn=None)["rows"]
    if r["name"].endswith("/relu") and r["name"].startswith("stage")
  ]
  return [
    ("LeNet-5", models.lenet5(), (32, 32, 1), None),
    ("VGG-16", models.vgg16(), (size, size, 3), None),
    ("ResNet-50", resnet, (size, size, 3), ["stem/conv", "stem/maxpool", *blocks]),
  ]


def gradients(model, input_shape, names, positions, inputs):
  """`|d unit / d x|` summed over the input's channels, one map per input and measured layer: the gradient of
  the sum over channels of each layer's output at its `position`, all layers in one backward pass (a vmap over
  the cotangents)."""
  _, params, state = model.init(jax.random.key(0), input_shape)
  captured = fc.capture(model.apply, names)
  shapes = jax.eval_shape(lambda x: captured(params, state, x)[0][1], inputs[0])
  onehots = {n: np.stack([np.zeros(shapes[n].shape) for _ in names]) for n in names}
  for i, n in enumerate(names):
    onehots[n][i][positions[n]] = 1.0

  @jax.jit
  def one_input(x, onehots):
    _, backward = jax.vjp(lambda x: captured(params, state, x)[0][1], x)
    (grads,) = jax.vmap(backward)(onehots)
    return jnp.abs(grads).sum(-1)

  return np.stack([np.asarray(one_input(x, onehots)) for x in inputs], axis=1)  # (layers, inputs, H, W)


def study(name, model, input_shape, measured, config):
  rows = [r for r in fc.receptive_field(model, input_shape) if isinstance(r["size"], tuple)]
  chosen = [r for r in rows if (r["name"] in measured if measured else r["type"] in SPATIAL_TYPES)]
  positions = {r["name"]: tuple(n // 2 for n in r["output_shape"][:-1]) for r in chosen}
  keys = jax.random.split(jax.random.key(1), config["inputs"])
  inputs = [jax.random.normal(k, input_shape, jnp.float64) for k in keys]
  start = time.perf_counter()
  grads = gradients(model, input_shape, [r["name"] for r in chosen], positions, inputs)
  layers = []
  for r, g in zip(chosen, grads):
    (y0, y1), (x0, x1) = viz.field_box(r, positions[r["name"]], input_shape)
    support = (g > THRESHOLD * g.max(axis=(1, 2), keepdims=True)).any(axis=0)
    inside = np.zeros_like(support)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    ys, xs = np.nonzero(support)
    layers.append(
      dict(
        name=r["name"],
        type=r["type"],
        output_shape=list(r["output_shape"]),
        size=list(r["size"]),
        jump=list(r["jump"]),
        position=list(positions[r["name"]]),
        computed_box=[[y0, y1], [x0, x1]],
        measured_box=[[int(ys.min()), int(ys.max())], [int(xs.min()), int(xs.max())]] if len(ys) else None,
        outside=int((support & ~inside).sum()),
        outside_max_relative=float((g * ~inside).max() / g.max()),
        coverage=round(float(support[inside].mean()), 4),
        effective_fraction=round(effective_fraction(g.mean(axis=0), inside), 4),
      )
    )
  published = PUBLISHED.get(name)
  ours_at_published = next((r["size"][0] for r in rows if published and r["name"] == published[0]), None)
  return (
    dict(
      input_shape=list(input_shape),
      layers=layers,
      inputs=config["inputs"],
      seconds=round(time.perf_counter() - start, 1),
      published=None if published is None else dict(layer=published[0], size=published[1], ours=ours_at_published),
    ),
    grads,
    chosen,
  )


def effective_fraction(magnitude, inside):
  """The fraction of the computed field's pixels holding 90% of the gradient's magnitude (smallest set first)."""
  values = np.sort(magnitude[inside])[::-1]
  if values.sum() == 0:
    return 0.0
  return float((np.searchsorted(np.cumsum(values) / values.sum(), 0.9) + 1) / len(values))


def plot_sizes(args, results):
  fig, axes = studies.figure(1, 3, figsize=(15, 4.2))
  for ax, (name, r) in zip(axes, results.items()):
    layers = r["layers"]
    x = np.arange(len(layers))
    computed = [min(row["size"][0], r["input_shape"][0]) for row in layers]
    measured = [
      None if row["measured_box"] is None else row["measured_box"][0][1] - row["measured_box"][0][0] + 1
      for row in layers
    ]
    ax.plot(x, [row["size"][0] for row in layers], "-", color="0.6", lw=1, label="computed (unclipped)")
    ax.plot(x, computed, "o-", ms=5, label="computed, clipped to the input")
    ax.plot(x, measured, "x", ms=8, mew=2, label="measured (gradient's support)")
    ax.axhline(r["input_shape"][0], color="k", ls=":", lw=1, label=f"input ({r['input_shape'][0]} px)")
    ticks = x if len(x) <= 20 else x[:: max(1, len(x) // 12)]
    ax.set_xticks(
      ticks,
      [layers[i]["name"].replace("/residual", "").replace("/relu", "") for i in ticks],
      rotation=60,
      ha="right",
      fontsize=7,
    )
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("receptive field height (input pixels)")
    ax.set_title(f"{name}: {r['input_shape'][0]}x{r['input_shape'][1]} input")
    ax.grid(alpha=0.3, which="both")
  axes[0].legend(fontsize=8, loc="upper left")
  fig.suptitle("Receptive field per layer: computed by fc.receptive_field, measured by gradients")
  return studies.save_figure(fig, args, "receptive_fields.png")


def plot_effective(args, maps):
  """The gradient's magnitude for a few layers, with the computed field's box: the effective receptive field."""
  import matplotlib.patches as patches
  from matplotlib.colors import LogNorm

  fig, axes = studies.figure(1, len(maps), figsize=(4.2 * len(maps), 4.4))
  for ax, (title, magnitude, ((y0, y1), (x0, x1))) in zip(axes, maps):
    measured = magnitude > THRESHOLD * magnitude.max()  # below: rounding, drawn blank as outside the field
    positive = magnitude[measured]
    image = ax.imshow(
      np.where(measured, magnitude, np.nan),
      cmap="magma",
      norm=LogNorm(vmin=max(positive.min(), positive.max() * 1e-6), vmax=positive.max()),
    )
    ax.add_patch(
      patches.Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec="cyan", lw=1.5, ls="--", label="computed field"
      )
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("input x (pixels)")
    ax.set_ylabel("input y (pixels)")
    ax.legend(loc="lower right", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="|gradient| (log scale)")
  fig.suptitle("One unit's gradient on the input (mean over random inputs): the effective receptive field")
  return studies.save_figure(fig, args, "receptive_fields_effective.png")


def main(argv=None):
  """The study in float64 (see the module docstring); the previous setting is restored for the studies after."""
  x64 = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    return run(argv)
  finally:
    jax.config.update("jax_enable_x64", x64)


def run(argv):
  started = time.perf_counter()
  p = studies.parser(__doc__)
  args, config = studies.options(
    p, argv, full=dict(seeds=1, image_size=128, inputs=4), quick=dict(seeds=1, image_size=48, inputs=2)
  )
  results, maps = {}, []
  for name, model, shape, measured in networks(config):
    print(f"{name}: {shape}")
    results[name], grads, chosen = study(name, model, shape, measured, config)
    pick = {"LeNet-5": "C3", "VGG-16": "conv4_3", "ResNet-50": "stage2/block3/relu"}[name]
    i = next(i for i, r in enumerate(chosen) if r["name"] == pick)
    layer = results[name]["layers"][i]
    maps.append(
      (
        f"{name} {pick}: field {layer['size'][0]} px,\n90% of the gradient on "
        f"{100 * layer['effective_fraction']:.0f}% of it",
        grads[i].mean(axis=0),
        layer["computed_box"],
      )
    )
  measured = [row for r in results.values() for row in r["layers"]]
  outside = sum(row["outside"] for row in measured)
  claims = {name: r["published"] for name, r in results.items() if r["published"]}
  residue = max(row["outside_max_relative"] for row in measured)
  partial = [row for row in measured if row["coverage"] < 1]
  verdict = (
    f"{len(measured)} layers measured: {outside} gradient pixels outside a computed field (the largest "
    f"gradient outside one is {residue:.1e} of the unit's largest: rounding); "
    + (
      "every layer's measured support fills its computed field exactly. "
      if not partial
      else f"{len(measured) - len(partial)} layers' measured support fills the computed field exactly, "
      f"{len(partial)} cover {min(row['coverage'] for row in partial):.0%} or more (ReLUs and max pools block "
      f"some paths for {config['inputs']} random inputs). "
    )
    + "; ".join(f"{n} {c['layer']}: published {c['size']} px, ours {c['ours']}" for n, c in claims.items())
    + " (torchvision's ResNet-50 v1.5 strides in each block's 3x3 convolution, v1 in its first 1x1)."
  )
  plot_sizes(args, results)
  plot_effective(args, maps)
  return studies.write(
    args,
    "receptive_fields",
    dict(
      claim="A unit's receptive field follows the recurrence r_l = r_(l-1) + (k_l - 1) d_l j_(l-1), j_l = j_(l-1) "
      "s_l (Araujo et al. 2019: VGG-16 212 px, ResNet-50 v1 483 px); the gradient of a unit is non-zero "
      "only inside it, and concentrated at its centre (Luo et al. 2016).",
      data=dict(
        name="random normal inputs (no data set: the geometry does not depend on it)",
        shapes={n: r["input_shape"] for n, r in results.items()},
      ),
      config=dict(config, threshold=THRESHOLD, dtype="float64"),
      ours=results,
      spread=f"support: the union over {config['inputs']} random inputs",
      verdict=verdict,
    ),
    started,
  )


if __name__ == "__main__":
  main()
