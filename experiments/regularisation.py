"""Regularisation on a training set small enough to overfit: dropout, data augmentation and early stopping, each on
alone and all together, against none.

Krizhevsky, Sutskever and Hinton (2012), sections 4.1 and 4.2: without data augmentation (random crops and
reflections) and without dropout their network overfits substantially; dropout roughly doubles the steps to
converge. Early stopping (Prechelt 1998) keeps the state of best validation accuracy. Here: `fc.models.small_cnn`
(two 3x3 conv + BatchNorm + ReLU layers, max pool, dense 128) on `TRAIN_EXAMPLES` training images, the same
initialisation, batch order, optimiser (Adam) and steps for every variant:
- dropout: rate 0.5 before the hidden dense layer (`small_cnn(dropout=0.5)`), off: 0.0;
- augmentation (`funconv.data.augmenter`): random shifts by zero-padding and cropping, `AUGMENT` pixels per data set.
  No flips for digits: a mirrored 2, 3, 4, 7 or 9 is not that digit, and the network would learn shapes no test
  digit has; flips are used only for CIFAR-10 (and Fashion-MNIST), whose classes are mirror-symmetric;
- early stopping: a fifth of the training images held out for validation (so the network trains on the other
  four fifths: the cost of the method), evaluated every `eval_every` steps, training stopped after `patience`
  evaluations without improvement, the best state kept.
Reported per variant: training accuracy (the images trained on, evaluation mode), test accuracy, their gap.

    python experiments/regularisation.py [--quick] [--data digits|mnist|fashion_mnist|cifar10 --data-dir DIR]
"""

import time

import numpy as np
import optax

import funconv as fc
import studies
from funconv.train.loop import validation_size

CLAIM = dict(
  source="Krizhevsky, Sutskever and Hinton 2012, ImageNet Classification with Deep Convolutional Neural Networks, "
  "sections 4.1 and 4.2; Prechelt 1998, Early Stopping - But When?",
  statement="Without data augmentation the network suffers from substantial overfitting; without dropout it "
  "exhibits substantial overfitting, and dropout roughly doubles the number of iterations required to "
  "converge. Early stopping at the best validation error trades training time for generalisation.",
  dropout_iterations_factor=2.0,
)
TRAIN_EXAMPLES = 200
# Shift range in pixels (zero padding, then a random crop) and flips, per data set: see the module docstring.
AUGMENT = {"digits": (1, False), "mnist": (2, False), "fashion_mnist": (2, True), "cifar10": (4, True)}
VARIANTS = {
  "none": (),
  "dropout": ("dropout",),
  "augmentation": ("augmentation",),
  "early stopping": ("early stopping",),
  "all three": ("dropout", "augmentation", "early stopping"),
}
FULL = dict(
  seeds=3, steps=1500, batch_size=32, eval_every=20, learning_rate=1e-3, dropout=0.5, patience=15, val_fraction=0.2
)
QUICK = dict(
  seeds=2, steps=600, batch_size=32, eval_every=20, learning_rate=1e-3, dropout=0.5, patience=15, val_fraction=0.2
)


def run(variant, data, config, augment):
  """Train one variant over the seeds; with early stopping on the training set less its validation fifth."""
  on = VARIANTS[variant]
  model = fc.models.small_cnn(data.num_classes, dropout=config["dropout"] if "dropout" in on else 0.0)
  kwargs = dict(augment=augment if "augmentation" in on else None, desc=variant)
  if "early stopping" in on:
    n_val = validation_size(len(data.x_train), config["val_fraction"])
    order = np.random.default_rng(1).permutation(len(data.x_train))
    val, keep = order[:n_val], np.sort(order[n_val:])
    kwargs.update(val=(data.x_train[val], data.y_train[val]), patience=config["patience"])
    data = data._replace(x_train=data.x_train[keep], y_train=data.y_train[keep])
  return studies.train(model, optax.adam(config["learning_rate"]), data, config, **kwargs)


def plot(args, config, runs):
  fig, (train, test, bars) = studies.figure(1, 3, figsize=(17, 4.8))
  for i, (name, records) in enumerate(runs.items()):
    n = min(len(r["train_error"]) for r in records)  # early stopping ends the seeds at different steps
    studies.band(
      train, np.arange(1, n + 1), [studies.smooth(r["train_error"][:n], 20) for r in records], name, color=f"C{i}"
    )
    k = min(len(r["eval_step"]) for r in records)
    studies.band(test, records[0]["eval_step"][:k], [r["test_error"][:k] for r in records], name, color=f"C{i}")
    for r in records:
      if r["steps_run"] < config["steps"]:
        test.plot(r["kept_step"], r["test_error"][r["eval_step"].index(r["kept_step"])], "v", color=f"C{i}", ms=7)
  train.set(
    yscale="log",
    ylim=(1e-3, 1),
    xlabel=f"training step (batch of {config['batch_size']})",
    ylabel="training error (last 20 steps, training mode)",
    title="Training error (mean, min-max band)",
  )
  test.set(
    yscale="log",
    xlabel=f"training step (batch of {config['batch_size']})",
    ylabel="test error",
    title="Test error (mean, min-max band; v: state kept by early stopping)",
  )
  for ax in (train, test):
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  names, width = list(runs), 0.38
  for j, (key, label) in enumerate((("train_accuracy", "training accuracy"), ("test_accuracy", "test accuracy"))):
    means = [100 * np.mean([r[key] for r in runs[name]]) for name in names]
    bars.bar(np.arange(len(names)) + (j - 0.5) * width, means, width, label=label, color=("0.7", "C0")[j])
    for i, name in enumerate(names):
      bars.scatter(
        [i + (j - 0.5) * width] * len(runs[name]), [100 * r[key] for r in runs[name]], color="k", s=8, zorder=3
      )
  bottom = max(0, min(100 * r["test_accuracy"] for records in runs.values() for r in records) - 5)
  for i, name in enumerate(names):
    gap = 100 * np.mean([r["train_accuracy"] - r["test_accuracy"] for r in runs[name]])
    bars.text(
      i,
      bottom + 0.5,
      f"gap\n{gap:.1f}",
      ha="center",
      va="bottom",
      fontsize=8,
      bbox=dict(facecolor="white", alpha=0.8, lw=0),
    )
  bars.set_xticks(range(len(names)), names, fontsize=8)
  bars.set(
    ylim=(bottom, 100.5),
    ylabel="accuracy (%)",
    title="Final accuracy (bars: mean; dots: seeds;\ngap: training minus test, points)",
  )
  bars.legend(fontsize=8, loc="upper right")
  bars.grid(alpha=0.3, axis="y")
  fig.suptitle(f"Regularisation on {TRAIN_EXAMPLES} training images of {args.data}, {len(config['seeds'])} seeds")
  return studies.save_figure(fig, args, "regularisation.png")


def main(argv=None):
  started = time.perf_counter()
  args, config = studies.options(studies.parser(__doc__), argv, FULL, QUICK)
  data = studies.load_data(args, train_examples=TRAIN_EXAMPLES)
  padding, flip = AUGMENT[args.data]
  augment = fc.data.augmenter(crop_padding=padding, flip=flip)
  runs = {variant: run(variant, data, config, augment) for variant in VARIANTS}
  measure = lambda name, f: [f(r) for r in runs[name]]
  gap = lambda r: r["train_accuracy"] - r["test_accuracy"]
  spreads = dict(
    train_accuracy={n: studies.spread(measure(n, lambda r: r["train_accuracy"])) for n in runs},
    test_accuracy={n: studies.spread(measure(n, lambda r: r["test_accuracy"])) for n in runs},
    gap={n: studies.spread(measure(n, gap)) for n in runs},
    steps_run={n: studies.spread(measure(n, lambda r: r["steps_run"])) for n in runs},
    kept_step={n: studies.spread(measure(n, lambda r: r["kept_step"])) for n in runs},
    test_accuracy_minus_none={
      n: studies.spread([r["test_accuracy"] - b["test_accuracy"] for r, b in zip(runs[n], runs["none"])])
      for n in runs
      if n != "none"
    },
  )

  def effect(name):
    d, g = spreads["test_accuracy_minus_none"][name], spreads["gap"][name]["mean"] - spreads["gap"]["none"]["mean"]
    sign = "helps on every seed" if d["min"] > 0 else "hurts on every seed" if d["max"] < 0 else "not separated"
    return (
      f"{name}: test {100 * spreads['test_accuracy'][name]['mean']:.2f}% ({100 * d['mean']:+.2f} points, per "
      f"seed {100 * d['min']:+.2f} to {100 * d['max']:+.2f}: {sign}), train-test gap {100 * g:+.2f} points "
      "against none"
    )

  verdict = (
    f"none: training {100 * spreads['train_accuracy']['none']['mean']:.2f}%, test "
    f"{100 * spreads['test_accuracy']['none']['mean']:.2f}% (gap "
    f"{100 * spreads['gap']['none']['mean']:.2f} points); " + "; ".join(effect(n) for n in runs if n != "none")
  )
  n_val = validation_size(TRAIN_EXAMPLES, config["val_fraction"])
  kept = spreads["kept_step"]["early stopping"]
  verdict += (
    f". Early stopping kept the states of steps {kept['min']:.0f} to {kept['max']:.0f} (of "
    f"{config['steps']}): validation accuracy on {n_val} images moves in {100 / n_val:.1f}-point steps, "
    f"so it soon stops improving strictly; and the network trains on {config['val_fraction']:.0%} fewer "
    f"images."
  )
  results = dict(
    claim=CLAIM,
    data=data.info,
    config=dict(
      config,
      train_examples=TRAIN_EXAMPLES,
      variants={k: list(v) for k, v in VARIANTS.items()},
      augmentation=f"funconv.data.augmenter(crop_padding={padding}, flip={flip})",
      network="fc.models.small_cnn(classes, dropout=0.5 with dropout, else 0.0)",
      optimizer=f"Adam, learning rate {config['learning_rate']}, constant",
      early_stopping=f"validation: {config['val_fraction']:.0%} of the training images (fixed draw), "
      f"trained on the rest; stop after {config['patience']} evaluations (every "
      f"{config['eval_every']} steps) without improvement; the best state kept",
    ),
    ours={k: {n: s["mean"] for n, s in v.items()} for k, v in spreads.items()},
    spread=spreads,
    verdict=verdict,
    curves={
      name: [
        dict(
          seed=r["seed"],
          steps_run=r["steps_run"],
          kept_step=r["kept_step"],
          train_error=r["train_error"],
          eval_step=r["eval_step"],
          test_error=r["test_error"],
          **({"val_error": r["val_error"]} if "val_error" in r else {}),
        )
        for r in records
      ]
      for name, records in runs.items()
    },
  )
  plot(args, config, runs)
  print(verdict)
  return studies.write(args, "regularisation", results, started)


if __name__ == "__main__":
  main()
