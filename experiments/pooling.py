"""Max, average and L2 pooling and strided convolution in the same network: test accuracy and time per training step.

Scherer, Mueller and Behnke (2010) found max pooling significantly better than subsampling (average pooling);
Springenberg, Dosovitskiy, Brox and Riedmiller (2015) replaced each max pool by a 3x3 convolution of stride 2 without
losing accuracy (All-CNN-C 9.08% test error on CIFAR-10 without augmentation, the max-pooling Model C 9.74%). Here:
two 3x3 convolutions (32, 64 channels) with ReLU, each followed by the downsampling under test (2x2 max, average or
L2 pool, stride 2; or a 3x3 stride-2 convolution with ReLU, the All-CNN replacement, which adds parameters), and the
classifier; digits upsampled to 16x16 so that the two stages halve 16 -> 8 -> 4. Everything else is the same:
initialisation and batch order per seed, Adam, steps. Time per training step: each variant's step compiled and warmed
up, then timed in interleaved runs (the order rotating), the median over runs.

    python experiments/pooling.py [--quick] [--data digits|mnist|fashion_mnist|cifar10 --data-dir DIR]
"""

import statistics
import time

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

import funconv as fc
import studies
from funconv.train import init_train_state, make_steps

CLAIM = dict(
  sources=[
    "Scherer, Mueller and Behnke 2010, Evaluation of Pooling Operations in Convolutional Architectures for "
    "Object Recognition",
    "Springenberg, Dosovitskiy, Brox and Riedmiller 2015, Striving for Simplicity: The All Convolutional Net, Table 3",
  ],
  statement="A maximum pooling operation significantly outperforms subsampling (average pooling) operations "
  "(Scherer et al.); max pooling can be replaced by a convolution with stride 2 without loss in accuracy: "
  "CIFAR-10 without augmentation, All-CNN-C 9.08% test error, the max-pooling Model C 9.74% "
  "(Springenberg et al.).",
  all_cnn_c_test_error=0.0908,
  model_c_test_error=0.0974,
)
VARIANTS = {
  "max pool": lambda channels: fc.MaxPool((2, 2), strides=(2, 2)),
  "average pool": lambda channels: fc.AvgPool((2, 2), strides=(2, 2)),
  "L2 pool": lambda channels: fc.L2Pool((2, 2), strides=(2, 2)),
  "strided conv": lambda channels: fc.serial(fc.Conv(channels, (3, 3), strides=(2, 2), padding="SAME"), fc.Relu),
}
FULL = dict(seeds=3, steps=600, batch_size=32, eval_every=25, learning_rate=1e-3, timing_runs=15, timing_steps=10)
QUICK = dict(seeds=2, steps=250, batch_size=32, eval_every=50, learning_rate=1e-3, timing_runs=5, timing_steps=5)


def network(downsample, num_classes):
  return fc.serial(
    fc.Conv(32, (3, 3), padding="SAME"),
    fc.Relu,
    downsample(32),
    fc.Conv(64, (3, 3), padding="SAME"),
    fc.Relu,
    downsample(64),
    fc.Flatten,
    fc.Dense(num_classes),
  )


def step_times(models, data, config):
  """Seconds per training step of each model (batch `config["batch_size"]`, Adam): `config["timing_runs"]` runs of
  `config["timing_steps"]` steps per model, interleaved across the models in a rotating order after compilation
  and two warm-up steps; returns every run's seconds per step."""
  x, y = data.x_train[: config["batch_size"]], data.y_train[: config["batch_size"]]
  steps, states = {}, {}
  for name, model in models.items():
    optimizer = optax.adam(config["learning_rate"])
    steps[name] = make_steps(model, optimizer, normalize=data.normalize)[0]
    states[name] = init_train_state(model, optimizer, x.shape[1:])
    for _ in range(3):  # the first compiles
      states[name], metrics = steps[name](states[name], x, y)
    jax.block_until_ready(metrics)
  times, names = {name: [] for name in models}, list(models)
  for run in tqdm(range(config["timing_runs"]), desc="timing", leave=False):
    for name in names[run % len(names) :] + names[: run % len(names)]:
      start = time.perf_counter()
      for _ in range(config["timing_steps"]):
        states[name], metrics = steps[name](states[name], x, y)
      jax.block_until_ready(metrics)
      times[name].append((time.perf_counter() - start) / config["timing_steps"])
  return times


def plot(args, config, runs, counts, times, shape):
  fig, (curves, acc, speed) = studies.figure(1, 3, figsize=(16, 4.6))
  for name, records in runs.items():
    studies.band(curves, records[0]["eval_step"], [r["test_error"] for r in records], name)
  curves.set(
    yscale="log",
    xlabel=f"training step (batch of {config['batch_size']})",
    ylabel="test error",
    title="Test error during training (mean, min-max band)",
  )
  curves.legend()
  curves.grid(alpha=0.3, which="both")
  labels = [f"{name}\n{counts[name]:,} params" for name in runs]
  for i, records in enumerate(runs.values()):
    values = [100 * r["test_accuracy"] for r in records]
    acc.bar(i, np.mean(values), color=f"C{i}", alpha=0.6)
    acc.scatter([i] * len(values), values, color="k", s=12, zorder=3, label="one seed" if i == 0 else None)
  low = min(100 * r["test_accuracy"] for records in runs.values() for r in records)
  acc.set_xticks(range(len(runs)), labels, fontsize=8)
  acc.set(ylim=(max(0, low - 2), 100), ylabel="test accuracy (%)", title="Final test accuracy (bar: mean)")
  acc.legend()
  acc.grid(alpha=0.3, axis="y")
  base = statistics.median(times["max pool"])
  for i, (name, values) in enumerate(times.items()):
    ms = 1000 * np.asarray(values)
    speed.bar(i, np.median(ms), color=f"C{i}", alpha=0.6)
    speed.scatter([i] * len(ms), ms, color="k", s=6, zorder=3, label="one timed run" if i == 0 else None)
    speed.text(
      i,
      np.median(ms) / 2,
      f"{np.median(ms) / 1000 / base:.2f}x",
      ha="center",
      va="center",
      bbox=dict(facecolor="white", alpha=0.8, lw=0),
    )
  speed.set_xticks(range(len(times)), labels, fontsize=8)
  speed.set(
    ylabel="ms per training step",
    title=f"Time per training step (batch {config['batch_size']}): median,\nand its ratio to max pooling's",
  )
  speed.legend()
  speed.grid(alpha=0.3, axis="y")
  fig.suptitle(f"Pooling: {args.data}, input {'x'.join(map(str, shape))}, {len(config['seeds'])} seeds")
  return studies.save_figure(fig, args, "pooling.png")


def main(argv=None):
  started = time.perf_counter()
  args, config = studies.options(studies.parser(__doc__), argv, FULL, QUICK)
  data = studies.load_data(args, size=16 if args.data == "digits" else None)
  models = {name: network(downsample, data.num_classes) for name, downsample in VARIANTS.items()}
  counts = {name: fc.summary(model, data.x_train.shape[1:], print_fn=None)["params"] for name, model in models.items()}
  runs = {
    name: studies.train(model, optax.adam(config["learning_rate"]), data, config, desc=name)
    for name, model in models.items()
  }
  times = step_times(models, data, config)
  test = {name: studies.spread([r["test_accuracy"] for r in records]) for name, records in runs.items()}
  diffs = {
    name: [r["test_accuracy"] - m["test_accuracy"] for r, m in zip(records, runs["max pool"])]
    for name, records in runs.items()
    if name != "max pool"
  }
  ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
  ratios = {name: ms[name] / ms["max pool"] for name in ms}
  verdict = (
    "; ".join(
      f"{name}: test accuracy {100 * test[name]['mean']:.2f}% ({100 * np.mean(d):+.2f} points against max pooling, "
      f"per seed {100 * min(d):+.2f} to {100 * max(d):+.2f}), step time {ratios[name]:.2f}x max pooling's"
      for name, d in diffs.items()
    )
    + f" (max pooling: {100 * test['max pool']['mean']:.2f}%, {ms['max pool']:.1f} ms)"
  )
  results = dict(
    claim=CLAIM,
    data=data.info,
    config=dict(
      config,
      optimizer=f"Adam, learning rate {config['learning_rate']}, constant",
      network="conv 3x3 (32) SAME, ReLU, DOWN(32), conv 3x3 (64) SAME, ReLU, DOWN(64), dense (classes); "
      "DOWN: 2x2/2 max, average or L2 pool, or conv 3x3/2 SAME (C channels) + ReLU",
      timing="training step (forward, backward, Adam), jit-compiled, after 3 warm-up steps; "
      "timing_runs runs of timing_steps steps per variant, interleaved in a rotating order; "
      "the median run's seconds per step",
    ),
    ours=dict(
      parameters=counts,
      test_accuracy={k: v["mean"] for k, v in test.items()},
      minus_max_pool={k: float(np.mean(v)) for k, v in diffs.items()},
      ms_per_step=ms,
      step_time_ratio_to_max_pool=ratios,
      timing_note="absolute times depend on the machine and its load (see environment); the ratios are "
      "what carries over, and only roughly",
    ),
    spread=dict(
      test_accuracy=test,
      minus_max_pool={k: studies.spread(v) for k, v in diffs.items()},
      ms_per_step={k: studies.spread(1000 * np.asarray(v)) for k, v in times.items()},
    ),
    verdict=verdict,
    curves={
      name: [
        dict(seed=r["seed"], eval_step=r["eval_step"], test_error=r["test_error"], train_error=r["train_error"])
        for r in records
      ]
      for name, records in runs.items()
    },
  )
  plot(args, config, runs, counts, times, data.x_train.shape[1:])
  print(verdict)
  return studies.write(args, "pooling", results, started)


if __name__ == "__main__":
  main()
