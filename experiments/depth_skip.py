"""Depth and skip connections: plain against residual networks of 20 and 56 layers, training and test error curves.

He, Zhang, Ren and Sun (2016), Figure 6: on CIFAR-10 the 56-layer plain network has a higher training error than the
20-layer one throughout training (degradation: an optimisation difficulty, not overfitting), while with identity
shortcuts the deeper network is the better one (Table 6: ResNet-20 8.75% test error, ResNet-56 6.97%). Here:
`fc.models.cifar_resnet(depth, shortcuts=True/False)` (the plain network has the same layers and parameters, no
skip connections), trained as in the paper's section 4.2 but shorter: SGD with momentum 0.9, weight decay 1e-4, the
learning rate divided by 10 at 50% and 75% of the steps, the same initialisation and batch order per seed. The
learning rate is the paper's 0.1 at batch 128 scaled to batch 32 (0.025; at 0.1 with batch 32 even ResNet-56 trained
erratically). The
images are used at their own size (digits 8x8: the three stages work at 8x8, 4x4 and 2x2 where CIFAR's work at 32x32,
16x16 and 8x8). A data set as small and easy as digits is fitted by every network given time, so the question it can
answer is which networks are slower to fit, not which ones fail; what was measured is reported as measured.

    python experiments/depth_skip.py [--quick] [--data digits|mnist|fashion_mnist|cifar10 --data-dir DIR]
"""

import time

import numpy as np
import optax

import funconv as fc
import studies

CLAIM = dict(
  source="He, Zhang, Ren and Sun 2016, Deep Residual Learning for Image Recognition, Figure 6 and Table 6",
  statement="On CIFAR-10 the deeper plain network has higher training error (plain-56 above plain-20 throughout "
  "training); with shortcuts the deeper network has lower training and test error: ResNet-20 8.75%, "
  "ResNet-56 6.97% test error.",
  resnet20_test_error=0.0875,
  resnet56_test_error=0.0697,
)
FULL = dict(
  seeds=2,
  depths=[20, 56],
  steps=450,
  batch_size=32,
  eval_every=45,
  learning_rate=0.025,
  momentum=0.9,
  weight_decay=1e-4,
)
QUICK = dict(
  seeds=1, depths=[8, 20], steps=270, batch_size=32, eval_every=45, learning_rate=0.025, momentum=0.9, weight_decay=1e-4
)
WINDOW = 45  # steps the training error is averaged over (an epoch of digits at batch 32)


def optimizer(config):
  """The paper's SGD: momentum, weight decay, the learning rate divided by 10 at 50% and 75% of training."""
  schedule = optax.piecewise_constant_schedule(
    config["learning_rate"], {config["steps"] // 2: 0.1, 3 * config["steps"] // 4: 0.1}
  )
  return optax.chain(
    optax.add_decayed_weights(config["weight_decay"]), optax.sgd(schedule, momentum=config["momentum"])
  )


def plot(args, config, runs):
  fig, axes = studies.figure(1, 2, figsize=(13, 4.8), sharey=True)
  x = np.arange(1, config["steps"] + 1)
  for ax, kind in zip(axes, ("plain", "residual")):
    for i, depth in enumerate(config["depths"]):
      records = runs[f"{kind}-{depth}"]
      studies.band(
        ax,
        x,
        [np.maximum(studies.smooth(r["train_error"], WINDOW), 1e-3) for r in records],
        f"{kind}-{depth} training",
        color=f"C{i}",
        ls="--",
      )
      studies.band(
        ax,
        records[0]["eval_step"],
        [np.maximum(r["test_error"], 1e-3) for r in records],
        f"{kind}-{depth} test",
        color=f"C{i}",
      )
    for drop in (config["steps"] // 2, 3 * config["steps"] // 4):
      ax.axvline(drop, color="grey", ls=":", lw=1)
    ax.set(
      yscale="log",
      xlabel=f"training step (batch of {config['batch_size']})",
      title=f"{kind} networks" + (" (no shortcuts)" if kind == "plain" else " (identity shortcuts)"),
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  axes[0].set_ylabel(f"error (training: last {WINDOW} steps; floor 0.1%)")
  fig.suptitle(
    f"Depth and skip connections: {args.data}, {len(config['seeds'])} seed(s), mean and min-max band; "
    f"dotted: learning rate / 10"
  )
  return studies.save_figure(fig, args, "depth_skip.png")


def main(argv=None):
  started = time.perf_counter()
  args, config = studies.options(studies.parser(__doc__), argv, FULL, QUICK)
  data = studies.load_data(args)
  shape = data.x_train.shape[1:]
  runs, counts = {}, {}
  for kind in ("plain", "residual"):
    for depth in config["depths"]:
      model = fc.models.cifar_resnet(depth, data.num_classes, shortcuts=kind == "residual")
      counts[f"{kind}-{depth}"] = fc.summary(model, shape, print_fn=None)["params"]
      runs[f"{kind}-{depth}"] = studies.train(model, optimizer(config), data, config, desc=f"{kind}-{depth}")

  def per_seed(name, measure):
    return [measure(r) for r in runs[name]]

  final_train = lambda r: float(studies.smooth(r["train_error"], WINDOW)[-1])
  mean_train = lambda r: float(np.mean(r["train_error"]))
  test_error = lambda r: 1 - r["test_accuracy"]
  measures = dict(final_training_error=final_train, mean_training_error=mean_train, test_error=test_error)
  spreads = {m: {name: studies.spread(per_seed(name, f)) for name in runs} for m, f in measures.items()}
  shallow, deep = config["depths"]

  def compare(kind, measure):
    a, b = spreads[measure][f"{kind}-{deep}"], spreads[measure][f"{kind}-{shallow}"]
    order = (
      "higher"
      if a["min"] > b["max"]
      else "lower"
      if a["max"] < b["min"]
      else "not separated from (the seeds' ranges overlap)"
    )
    return f"{kind}-{deep} {100 * a['mean']:.2f}% {order} {kind}-{shallow} {100 * b['mean']:.2f}%"

  verdict = (
    f"Training error over the whole run (how fast each fits): {compare('plain', 'mean_training_error')}; "
    f"{compare('residual', 'mean_training_error')}. Final training error (last {WINDOW} steps): "
    f"{compare('plain', 'final_training_error')}; {compare('residual', 'final_training_error')}. "
    f"Test error: {compare('plain', 'test_error')}; {compare('residual', 'test_error')}. Degradation "
    f"(the deeper plain network fitting the training set worse) "
    + (
      "was measured"
      if spreads["mean_training_error"][f"plain-{deep}"]["min"]
      > spreads["mean_training_error"][f"plain-{shallow}"]["max"]
      else "was not measured beyond the spread"
    )
    + f" on {args.data} in {config['steps']} steps, {len(config['seeds'])} seed(s)."
  )
  results = dict(
    claim=CLAIM,
    data=data.info,
    config=dict(
      config,
      optimizer="SGD, momentum, weight decay (optax.add_decayed_weights), learning rate / 10 "
      "at 50% and 75% of the steps",
      networks="fc.models.cifar_resnet(depth, classes, shortcuts=True|False): 3x3 conv (16), three "
      "stages of (depth - 2) / 6 blocks of two 3x3 conv + BatchNorm (16, 32, 64 channels), "
      "option-A shortcuts; plain: the same without the shortcuts",
      training_error=f"the training batches' error, measured as they are trained on (training mode), "
      f"averaged over the last {WINDOW} steps",
    ),
    ours=dict(
      parameters=counts, **{m: {name: s["mean"] for name, s in by_net.items()} for m, by_net in spreads.items()}
    ),
    spread=spreads,
    verdict=verdict,
    curves={
      name: [
        dict(
          seed=r["seed"],
          train_error=r["train_error"],
          train_loss=r["train_loss"],
          eval_step=r["eval_step"],
          test_error=r["test_error"],
        )
        for r in records
      ]
      for name, records in runs.items()
    },
  )
  plot(args, config, runs)
  print(verdict)
  return studies.write(args, "depth_skip", results, started)


if __name__ == "__main__":
  main()
