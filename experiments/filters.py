"""What the filters learn: a small CNN's first-layer filters before and after training, and its activation maps.

Krizhevsky, Sutskever and Hinton (2012, Figure 3) and Zeiler and Fergus (2014) show that a trained network's first
layer holds smooth, oriented edge and blob detectors, where its initialisation is white noise. Smoothness is
measured here as the share of a filter's energy at the lowest spatial frequencies (the 3x3 centre of its 5x5
discrete Fourier transform, the mean removed): white noise puts 8/24 = 33% there, an edge or blob detector most of
its energy.

    python experiments/filters.py [--quick] [--data cifar10 --data-dir DIR]
"""

import time

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

import funconv as fc
import studies
from funconv import viz
from funconv.data import batches
from funconv.train import init_train_state, make_steps

WINDOW = 5


def network(num_classes):
  """Two 5x5 conv layers, max pools, a classifier; the first layer initialised as AlexNet's, N(0, 0.01): a
  variance-preserving initialisation of a 25-weight filter (std 0.28) is so large that a short training run's
  updates hide in its noise."""
  return fc.serial(
    conv1=fc.Conv(16, WINDOW, padding="SAME", W_init=jax.nn.initializers.normal(0.01)),
    relu1=fc.Relu,
    pool1=fc.MaxPool(2, strides=2),
    conv2=fc.Conv(32, WINDOW, padding="SAME"),
    relu2=fc.Relu,
    pool2=fc.MaxPool(2, strides=2),
    flatten=fc.Flatten,
    fc=fc.Dense(num_classes),
  )


def low_frequency_share(W):
  """Per filter and input channel of `W` `(k, k, C_in, C_out)`: the share of the energy of its mean-free DFT at
  the 3x3 lowest frequencies."""
  W = np.asarray(W, np.float64)
  spectrum = np.abs(np.fft.fftshift(np.fft.fft2(W - W.mean(axis=(0, 1)), axes=(0, 1)), axes=(0, 1))) ** 2
  c = W.shape[0] // 2
  return (spectrum[c - 1 : c + 2, c - 1 : c + 2].sum(axis=(0, 1)) / spectrum.sum(axis=(0, 1))).ravel()


def run(model, data, config, seed):
  """Train `model` from `seed` for `config["steps"]` Adam steps; the first layer's kernel before and after, the
  trained state and the test accuracy."""
  train_step, eval_step = make_steps(model, optax.adam(config["lr"]), normalize=data.normalize)
  ts = init_train_state(model, optax.adam(config["lr"]), data.x_train.shape[1:], seed)
  names, _ = fc.param_names(model, data.x_train.shape[1:])
  before = np.asarray(fc.by_name(names, ts.params)["conv1/W"])
  steps, epoch = 0, 0
  while steps < config["steps"]:
    for x, y in batches(data.x_train, data.y_train, config["batch_size"], seed=seed, epoch=epoch):
      ts, _ = train_step(ts, x, y)
      steps += 1
      if steps == config["steps"]:
        break
    epoch += 1
  after = np.asarray(fc.by_name(names, ts.params)["conv1/W"])
  return before, after, ts, studies.accuracy(eval_step, ts, data.x_test, data.y_test)


def plot_shares(args, before, after):
  fig, ax = studies.figure(figsize=(6.5, 4))
  bins = np.linspace(0, 1, 26)
  ax.hist(before, bins, alpha=0.6, label=f"at initialisation (median {np.median(before):.2f})")
  ax.hist(after, bins, alpha=0.6, label=f"after training (median {np.median(after):.2f})")
  ax.axvline(8 / 24, color="k", ls=":", label="white noise's expectation (8/24)")
  ax.set_xlabel("share of a filter's energy at the lowest spatial frequencies")
  ax.set_ylabel("filters x input channels (all seeds)")
  ax.set_title("First-layer filters become smooth: low-frequency energy share")
  ax.legend(fontsize=8)
  return studies.save_figure(fig, args, "filters_smoothness.png")


def main(argv=None):
  started = time.perf_counter()
  p = studies.parser(__doc__)
  args, config = studies.options(
    p,
    argv,
    full=dict(seeds=3, steps=1500, batch_size=64, lr=1e-3, image_size=32),
    quick=dict(seeds=1, steps=150, batch_size=64, lr=1e-3, image_size=32),
  )
  data = studies.load_data(args, size=config["image_size"])
  model = network(data.num_classes)
  runs = [run(model, data, config, seed) for seed in tqdm(config["seeds"], desc="filters")]
  before = np.concatenate([low_frequency_share(b) for b, *_ in runs])
  after = np.concatenate([low_frequency_share(a) for _, a, *_ in runs])
  first, trained, ts, _ = runs[0]
  args.out.mkdir(parents=True, exist_ok=True)
  kind = "RGB images" if first.shape[2] == 3 else "one panel per filter"
  viz.plot_filters(
    first,
    title=f"conv1 at initialisation (seed 0): 16 filters of {WINDOW}x{WINDOW}, {kind}",
    path=args.out / "filters_before.png",
  )
  viz.plot_filters(
    trained, title=f"conv1 after {config['steps']} Adam steps (seed 0)", path=args.out / "filters_after.png"
  )
  image = data.x_test[0]
  normalised = (image - data.normalize[0]) / data.normalize[1]  # what the trained network sees
  maps = viz.activation_maps(model, ts.params, ts.state, normalised.astype(np.float32))
  viz.plot_activation_maps(
    maps,
    image,
    title=f"Activation maps of a test image (label {int(data.y_test[0])}) through the trained network's convolutions",
    path=args.out / "filters_activations.png",
  )
  plot_shares(args, before, after)
  moved = [float(np.linalg.norm(a - b) / np.linalg.norm(b)) for b, a, *_ in runs]
  accuracy = [r[3] for r in runs]
  ratio = float(np.median(after) / np.median(before))
  return studies.write(
    args,
    "filters",
    dict(
      claim="Trained first-layer filters are smooth edge, stroke and blob detectors where their initialisation is "
      "white noise (Krizhevsky et al. 2012, Figure 3; Zeiler and Fergus 2014, Figure 2).",
      data=data.info,
      config=config,
      ours=dict(
        low_frequency_share_before=studies.spread(before),
        low_frequency_share_after=studies.spread(after),
        median_ratio=ratio,
        relative_change_of_conv1=studies.spread(moved),
        test_accuracy=studies.spread(accuracy),
      ),
      spread=f"over {len(runs)} seeds x 16 filters x {first.shape[2]} input channels",
      verdict=(
        f"The median low-frequency share went from {np.median(before):.2f} (white noise: 0.33) to "
        f"{np.median(after):.2f} ({ratio:.1f}x): the trained filters are "
        f"{'smoother' if ratio > 1.2 else 'not clearly smoother'}; conv1 moved by "
        f"{np.mean(moved):.0%} of its initial norm; test accuracy {np.mean(accuracy):.3f}."
      ),
    ),
    started,
  )


if __name__ == "__main__":
  main()
