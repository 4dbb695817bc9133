"""What the literature studies share: their flags, their data, a training loop that records curves, statistics over
seeds, and the writing of JSON and figures.

Every study runs as `python experiments/<study>.py [--quick] [--data NAME --data-dir DIR] [--seeds N] [--out DIR]`:
scikit-learn's embedded digits by default, or MNIST, Fashion-MNIST or CIFAR-10 from their standard files in DIR
(nothing is downloaded). It writes `<out>/<study>.json` and `<out>/<study>*.png`, `<out>` being
`experiments/results`, or `experiments/results/quick` for the reduced `--quick` form, and its `main(argv)` returns
the results dict.
"""

import argparse
import importlib.metadata
import itertools
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import funconv as fc
from funconv.data import batches
from funconv.train import init_train_state, make_steps

RESULTS = pathlib.Path(__file__).parent / "results"
EVAL_BATCH = 500
CURVE_TEST_EXAMPLES = 2000  # test error during training is measured on at most these (the final one on all)


class Data(NamedTuple):
  """A data set as the studies use it: float32 images `(N, H, W, C)` in [0, 1], int32 labels, the training set's
  per-channel `normalize=(mean, std)` for `make_steps`, and `info`, the description every results JSON carries."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  normalize: Any
  info: dict


def parser(doc):
  """The flags every study takes; a study adds its own before `options`."""
  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="the reduced form: fewer steps, seeds and examples")
  p.add_argument("--data", default="digits", choices=("digits", "mnist", "fashion_mnist", "cifar10"))
  p.add_argument("--data-dir", help="the directory holding the standard files of --data (nothing is downloaded)")
  p.add_argument("--seeds", type=int, help="how many seeds (default: the study's configuration)")
  p.add_argument("--out", help="output directory (default experiments/results; experiments/results/quick with --quick)")
  return p


def output_dir(args):
  """Where a run with flags `args` writes: `--out`, else `experiments/results` (`results/quick` with `--quick`)."""
  return pathlib.Path(args.out or (RESULTS / "quick" if args.quick else RESULTS))


def options(p, argv, full, quick):
  """`(args, config)`: the parsed flags and the study's configuration, `quick` or `full` (dicts) by `--quick`,
  with `seeds` a list `[0, ..., N - 1]` (`--seeds N` overriding the configuration's count)."""
  args = p.parse_args(argv)
  args.argv = sys.argv[1:] if argv is None else list(argv)
  args.out = output_dir(args)
  config = dict(quick if args.quick else full, form="quick" if args.quick else "full")
  config["seeds"] = list(range(args.seeds or config["seeds"]))
  return args, config


def load_data(args, size=None, train_examples=None):
  """`--data` as `Data`: resized (bilinear, `jax.image.resize`) to `size` x `size` where `size` is given and differs,
  the training set cut to `train_examples` drawn at random (fixed seed) where given."""
  sets = fc.data.load(args.data, args.data_dir)
  x_train, y_train, x_test, y_test = sets.x_train, sets.y_train, sets.x_test, sets.y_test
  source = "scikit-learn load_digits (embedded), fixed 80/20 split" if args.data == "digits" else str(args.data_dir)
  info = dict(name=args.data, source=source, original_shape=list(x_train.shape[1:]), train_available=len(x_train))
  if train_examples is not None and train_examples < len(x_train):
    keep = np.sort(np.random.default_rng(0).permutation(len(x_train))[:train_examples])
    x_train, y_train = x_train[keep], y_train[keep]
  if size is not None and x_train.shape[1:3] != (size, size):
    resize = lambda x: np.asarray(jax.image.resize(x, (len(x), size, size, x.shape[-1]), "bilinear"))
    x_train, x_test = resize(x_train), resize(x_test)
    info["resized"] = f"bilinear to {size}x{size} (jax.image.resize)"
  mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))
  info.update(
    shape=list(x_train.shape[1:]),
    train=len(x_train),
    test=len(x_test),
    classes=sets.num_classes,
    train_class_counts=np.bincount(y_train, minlength=sets.num_classes).tolist(),
    normalize=dict(mean=mean.tolist(), std=std.tolist()),
  )
  return Data(x_train, y_train, x_test, y_test, sets.num_classes, (mean, std), info)


def accuracy(eval_step, ts, x, y):
  """The accuracy of `ts` on `(x, y)` in evaluation mode, in batches of `EVAL_BATCH`: the last one padded with
  label -1, which is never correct, so that one compiled shape serves every evaluation."""
  pad = -len(x) % EVAL_BATCH
  x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  y = np.concatenate([y, np.full(pad, -1, y.dtype)])
  correct = sum(
    float(eval_step(ts, x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH])["correct"]) for i in range(0, len(x), EVAL_BATCH)
  )
  return correct / (len(x) - pad)


def train(model, optimizer, data, config, *, augment=None, val=None, patience=None, desc="train"):
  """Train `model` with `optimizer` once per seed of `config["seeds"]` for `config["steps"]` steps of
  `config["batch_size"]` examples (the steps compiled once, `make_steps`); returns one record per seed.

  A record holds, per step, the batch's training loss and error (`train_loss`, `train_error`, measured in training
  mode before the update), and every `config["eval_every"]` steps (and at the end) the test error on at most
  `CURVE_TEST_EXAMPLES` test images (`eval_step`, `test_error`). With `val=(x, y)` the validation error is recorded
  too (`val_error`) and the state of the best validation accuracy is kept (at `kept_step`; otherwise the last
  state is); with `patience` as well, training stops once the validation accuracy has not improved for `patience`
  evaluations (early stopping; `steps_run` says where). The final `train_accuracy` (on at most 10,000 training
  images, evaluation mode) and `test_accuracy` (the whole test set) are those of the kept state.
  """
  train_step, eval_step = make_steps(model, optimizer, augment=augment, normalize=data.normalize)
  x_curve, y_curve = data.x_test[:CURVE_TEST_EXAMPLES], data.y_test[:CURVE_TEST_EXAMPLES]
  records = []
  for seed in config["seeds"]:
    ts = init_train_state(model, optimizer, data.x_train.shape[1:], seed)
    stream = (
      b
      for epoch in itertools.count()
      for b in batches(data.x_train, data.y_train, config["batch_size"], seed=seed, epoch=epoch)
    )
    metrics, evals, best = [], dict(eval_step=[], test_error=[], val_error=[]), (-math.inf, None, 0)
    bar = tqdm(range(1, config["steps"] + 1), desc=f"{desc} seed {seed}", leave=False, mininterval=1)
    for step in bar:
      ts, m = train_step(ts, *next(stream))
      metrics.append(m)  # device scalars: reading them every step would stall the asynchronous dispatch
      if step % config["eval_every"] and step < config["steps"]:
        continue
      evals["eval_step"].append(step)
      evals["test_error"].append(1 - accuracy(eval_step, ts, x_curve, y_curve))
      bar.set_postfix(test_error=f"{evals['test_error'][-1]:.3f}")
      if val is None:
        continue
      val_accuracy = accuracy(eval_step, ts, *val)
      evals["val_error"].append(1 - val_accuracy)
      if val_accuracy > best[0]:
        best = (val_accuracy, jax.tree.map(jnp.copy, ts), step)  # a copy: the next step donates ts's buffers
      elif patience is not None and (step - best[2]) // config["eval_every"] >= patience:
        break
    bar.close()
    kept, kept_step = (ts, step) if val is None else best[1:]
    metrics = jax.device_get(metrics)
    records.append(
      dict(
        seed=seed,
        steps_run=step,
        kept_step=kept_step,
        train_loss=[round(float(m["loss"] / m["count"]), 5) for m in metrics],
        train_error=[round(float(1 - m["correct"] / m["count"]), 5) for m in metrics],
        **{k: [round(v, 5) for v in vs] for k, vs in evals.items() if vs},
        train_accuracy=accuracy(eval_step, kept, data.x_train[:10_000], data.y_train[:10_000]),
        test_accuracy=accuracy(eval_step, kept, data.x_test, data.y_test),
      )
    )
  return records


def smooth(values, window):
  """The trailing moving average of `values` over `window` entries (fewer at the start)."""
  c = np.cumsum(np.concatenate([[0.0], np.asarray(values, float)]))
  n = np.arange(1, len(values) + 1)
  return (c[n] - c[np.maximum(n - window, 0)]) / np.minimum(n, window)


def spread(values):
  """Mean, standard deviation (n - 1), min, max and the values themselves, over seeds."""
  v = np.asarray(values, float)
  return dict(
    mean=float(v.mean()),
    std=float(v.std(ddof=1)) if len(v) > 1 else 0.0,
    min=float(v.min()),
    max=float(v.max()),
    values=v.tolist(),
  )


def band(ax, x, runs, label, color=None, **plot_kwargs):
  """Plot the mean of `runs` (seeds x points) against `x` and shade between their min and max."""
  runs = np.asarray(runs, float)
  (line,) = ax.plot(x, runs.mean(axis=0), label=label, color=color, lw=1.5, **plot_kwargs)
  ax.fill_between(x, runs.min(axis=0), runs.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)


def figure(*args, **kwargs):
  """`plt.subplots` with the non-interactive backend (the studies run headless)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt.subplots(*args, **kwargs)


def save_figure(fig, args, name):
  """Lay out `fig`, save it as `<out>/<name>` and close it; returns the path."""
  path = args.out / name
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  import matplotlib.pyplot as plt

  plt.close(fig)
  print(f"wrote {path}")
  return path


def environment():
  """The versions and machine a result was measured with."""
  versions = {
    name: importlib.metadata.version(name)
    for name in ("funconv", "jax", "jaxlib", "optax", "numpy", "scikit-learn", "matplotlib")
  }
  try:
    commit = subprocess.run(
      ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=pathlib.Path(__file__).parent
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = None
  return dict(
    versions=versions,
    python=platform.python_version(),
    git_commit=commit,
    platform=platform.platform(),
    processor=platform.processor() or platform.machine(),
    cpu_count=os.cpu_count(),
    jax_devices=[str(d) for d in jax.devices()],
    load_average=list(os.getloadavg()),
  )


def write(args, name, results, started):
  """Write `results` (with the command line, the environment and the run's duration) to `<out>/<name>.json`."""
  results = dict(
    study=name,
    command=" ".join([f"experiments/{name}.py", *args.argv]),
    **results,
    environment=environment(),
    seconds=round(time.perf_counter() - started, 1),
  )
  path = args.out / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  # Lists of numbers (the curves) on one line each: indented one number a line, the file would be mostly whitespace.
  text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: "".join(m.group(0).split()), json.dumps(results, indent=1))
  path.write_text(text)
  print(f"wrote {path} ({results['seconds']} s)")
  return results
