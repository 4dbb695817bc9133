"""Convolution against full connection: parameter counts and test accuracy of a CNN and of fully connected networks
(MLPs), one of them sized to the CNN's parameter count, and what weight sharing saves.

LeCun, Bottou, Bengio and Haffner (1998): a convolutional layer shares one small kernel across all positions, so it
has far fewer parameters than connections (LeNet-5's C1: 156 parameters, 122,304 connections), and LeNet-5 beat
fully connected networks on MNIST (0.95% test error against 3.05% for a 300-100 MLP). Here: a two-layer CNN, an MLP
with LeCun's 300-100 hidden layers, and an MLP of the same depth (two equal hidden layers) with the CNN's parameter
count, trained alike (Adam, the same steps and batches), on the whole training set and on random subsets of it
(`train_sizes`: the fewer examples, the more a network's built-in assumptions should matter); and, for each
convolution of the CNN and of LeNet-5, the parameters a locally connected layer (the same connections, unshared
weights) and a fully connected layer (every input to every output) would need for the same input and output shapes.

    python experiments/conv_vs_dense.py [--quick] [--data digits|mnist|fashion_mnist|cifar10 --data-dir DIR]
"""

import math
import time

import numpy as np
import optax

import funconv as fc
import studies

CLAIM = dict(
  source="LeCun, Bottou, Bengio and Haffner 1998, Gradient-Based Learning Applied to Document Recognition, "
  "section II-B and Figure 9",
  statement="Weight sharing: LeNet-5's C1 has 156 trainable parameters for 122,304 connections, C3 1,516 for "
  "151,600 (a partial connection table), the whole network about 60,000 for 340,908. On MNIST without "
  "distortions LeNet-5 reaches 0.95% test error, a fully connected 300-100 network 3.05%.",
  c1_parameters=156,
  c1_connections=122_304,
  lenet5_test_error=0.0095,
  mlp_300_100_test_error=0.0305,
)
FULL = dict(seeds=3, steps=1500, batch_size=32, eval_every=50, learning_rate=1e-3, train_sizes=[100, 300, None])
QUICK = dict(seeds=2, steps=500, batch_size=32, eval_every=50, learning_rate=1e-3, train_sizes=[100, None])


def cnn(num_classes):
  """Two 3x3 convolutions (32, 64 channels), each with ReLU and a 2x2 max pool, and the classifier."""
  pool = fc.MaxPool((2, 2), strides=(2, 2))
  return fc.serial(
    fc.Conv(32, (3, 3), padding="SAME"),
    fc.Relu,
    pool,
    fc.Conv(64, (3, 3), padding="SAME"),
    fc.Relu,
    pool,
    fc.Flatten,
    fc.Dense(num_classes),
  )


def mlp(hidden, num_classes):
  """Flatten, a dense layer with ReLU for each width in `hidden`, the classifier."""
  return fc.serial(
    fc.Flatten, *[layer for width in hidden for layer in (fc.Dense(width), fc.Relu)], fc.Dense(num_classes)
  )


def params(model, shape):
  return fc.summary(model, shape, print_fn=None)["params"]


def equal_budget_width(budget, shape, num_classes):
  """The width `w` of an MLP with two hidden layers of `w` units whose parameter count is nearest `budget`."""
  d = math.prod(shape)
  count = lambda w: (d + 1) * w + (w + 1) * w + (w + 1) * num_classes
  w = int((-(d + 2 + num_classes) + math.sqrt((d + 2 + num_classes) ** 2 + 4 * (budget - num_classes))) / 2)
  return min((w, w + 1), key=lambda w: abs(count(w) - budget))


def sharing(model, shape):
  """Per convolution of `model` at input `shape`: its parameters, and those of a locally connected layer (one kernel
  and bias per output position: the conv's parameters times its output positions, as many as it has connections)
  and of a fully connected layer mapping the same input to the same output."""
  rows = []
  for r in fc.summary(model, shape, print_fn=None)["rows"]:
    if r["type"] != "Conv":
      continue
    positions, out_size, in_size = (
      math.prod(r["output_shape"][:-1]),
      math.prod(r["output_shape"]),
      math.prod(r["input_shape"]),
    )
    rows.append(
      dict(
        layer=f"conv{len(rows) + 1}" if r["name"].isdigit() else r["name"],
        input_shape=list(r["input_shape"]),
        output_shape=list(r["output_shape"]),
        conv=r["params"],
        locally_connected=r["params"] * positions,
        fully_connected=(in_size + 1) * out_size,
        saving=positions,
      )
    )
  return rows


def plot(args, config, runs, counts, tables):
  fig, (curves, sizes, share) = studies.figure(1, 3, figsize=(16, 4.6))
  full = runs[max(runs)]
  for name, records in full.items():
    studies.band(
      curves, records[0]["eval_step"], [r["test_error"] for r in records], f"{name}, {counts[name]:,} params"
    )
  curves.set(
    yscale="log",
    xlabel=f"training step (batch of {config['batch_size']})",
    ylabel="test error",
    title=f"Test error during training, {max(runs):,} examples\n(mean over seeds, band: min to max)",
  )
  curves.legend(fontsize=8)
  curves.grid(alpha=0.3, which="both")
  for name in full:
    studies.band(
      sizes,
      sorted(runs),
      [[100 * runs[n][name][i]["test_accuracy"] for n in sorted(runs)] for i in range(len(config["seeds"]))],
      name,
      marker="o",
    )
  sizes.set(
    xscale="log",
    xlabel="training examples",
    ylabel="test accuracy (%)",
    title="Final test accuracy against training-set size\n(mean over seeds, band: min to max)",
  )
  sizes.set_xticks(sorted(runs), [f"{n:,}" for n in sorted(runs)])
  sizes.legend(fontsize=8)
  sizes.grid(alpha=0.3, which="both")
  rows = [(f"{net} {r['layer']}", r) for net, table in tables.items() for r in table]
  width = 0.27
  for j, (kind, label) in enumerate(
    (
      ("conv", "convolution (shared)"),
      ("locally_connected", "locally connected"),
      ("fully_connected", "fully connected"),
    )
  ):
    share.bar(np.arange(len(rows)) + (j - 1) * width, [r[kind] for _, r in rows], width, label=label)
  share.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=30, ha="right")
  share.set(yscale="log", ylabel="parameters", title="Parameters for the same input-to-output mapping")
  share.legend(fontsize=8)
  share.grid(alpha=0.3, axis="y")
  fig.suptitle(f"Convolution vs full connection: {args.data}, {len(config['seeds'])} seeds")
  return studies.save_figure(fig, args, "conv_vs_dense.png")


def main(argv=None):
  started = time.perf_counter()
  args, config = studies.options(studies.parser(__doc__), argv, FULL, QUICK)
  data = studies.load_data(args)
  shape, classes = data.x_train.shape[1:], data.num_classes
  width = equal_budget_width(params(cnn(classes), shape), shape, classes)
  equal = f"MLP {width}-{width} (CNN's budget)"
  models = {"CNN": cnn(classes), "MLP 300-100": mlp((300, 100), classes), equal: mlp((width, width), classes)}
  counts = {name: params(model, shape) for name, model in models.items()}
  runs, subsets = {}, {}
  for size in config["train_sizes"]:
    subset = data if size is None else studies.load_data(args, train_examples=size)
    subsets[subset.info["train"]] = subset.info["train_class_counts"]
    runs[subset.info["train"]] = {
      name: studies.train(
        model, optax.adam(config["learning_rate"]), subset, config, desc=f"{name}, {subset.info['train']} examples"
      )
      for name, model in models.items()
    }
  tables = {"CNN": sharing(models["CNN"], shape), "LeNet-5": sharing(fc.models.lenet5(), (32, 32, 1))}
  test = {
    n: {name: studies.spread([r["test_accuracy"] for r in records]) for name, records in by_model.items()}
    for n, by_model in runs.items()
  }
  gaps = {
    n: [c["test_accuracy"] - e["test_accuracy"] for c, e in zip(by_model["CNN"], by_model[equal])]
    for n, by_model in runs.items()
  }
  c1 = tables["LeNet-5"][0]
  verdict = "; ".join(
    f"{n:,} training examples: CNN {100 * test[n]['CNN']['mean']:.2f}%, equal-budget MLP "
    f"{100 * test[n][equal]['mean']:.2f}% ({100 * np.mean(g):+.2f} points, per seed {100 * min(g):+.2f} to "
    f"{100 * max(g):+.2f}), MLP 300-100 {100 * test[n]['MLP 300-100']['mean']:.2f}%"
    for n, g in gaps.items()
  )
  verdict += (
    f". Weight sharing: LeNet-5's C1 has {c1['conv']:,} parameters where a locally connected layer needs "
    f"{c1['locally_connected']:,} (the paper counts 122,304 connections: "
    f"{'the same' if c1['locally_connected'] == 122_304 else 'different'}) and a fully connected one "
    f"{c1['fully_connected']:,}."
  )
  results = dict(
    claim=CLAIM,
    data=dict(
      data.info,
      train_subsets=dict(sizes=list(runs), class_counts=subsets, drawn="at random from the training set, fixed seed"),
    ),
    config=dict(
      config,
      optimizer=f"Adam, learning rate {config['learning_rate']}, constant",
      networks={
        "CNN": "conv 3x3 (32) SAME, ReLU, max pool 2/2, conv 3x3 (64) SAME, ReLU, max pool 2/2, dense (classes)",
        "MLP 300-100": "dense 300, ReLU, dense 100, ReLU, dense (classes) (LeCun et al.'s)",
        equal: f"dense {width}, ReLU, dense {width}, ReLU, dense (classes): the width whose "
        f"parameter count is nearest the CNN's",
      },
      sharing="locally connected: one kernel and bias per output position (conv params x output "
      "positions, counting padded inputs); fully connected: (input size + 1) x output size",
    ),
    ours=dict(
      parameters=counts,
      test_accuracy={n: {k: v["mean"] for k, v in by_model.items()} for n, by_model in test.items()},
      cnn_minus_equal_mlp={n: float(np.mean(g)) for n, g in gaps.items()},
      weight_sharing=tables,
    ),
    spread=dict(test_accuracy=test, cnn_minus_equal_mlp={n: studies.spread(g) for n, g in gaps.items()}),
    verdict=verdict,
    curves=dict(
      train_examples=max(runs),
      **{
        name: [
          dict(seed=r["seed"], eval_step=r["eval_step"], test_error=r["test_error"], train_error=r["train_error"])
          for r in records
        ]
        for name, records in runs[max(runs)].items()
      },
    ),
  )
  plot(args, config, runs, counts, tables)
  print(verdict)
  return studies.write(args, "conv_vs_dense", results, started)


if __name__ == "__main__":
  main()
