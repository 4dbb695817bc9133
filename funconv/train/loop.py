"""`fit`: the training loop, with evaluation, early stopping, checkpoints, curves and metrics."""

import json
import math
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from funconv.data.pipeline import batches, num_batches
from funconv.train import checkpoint, distributed
from funconv.train.steps import init_train_state, make_steps


def _evaluate(eval_step, ts, x, y, batch_size, mesh):
  """Exact metrics of `(x, y)` over all processes: every batch full and split over the devices, the last one
  padded with examples that are not counted."""
  totals = None
  rows = distributed.process_rows(mesh, batch_size)
  for xb, yb in batches(x, y, batch_size, shuffle=False, drop_remainder=False, pad=True, rows=rows):
    m = eval_step(ts, *distributed.place_batch(mesh, batch_size, xb, yb))
    totals = m if totals is None else jax.tree.map(lambda a, b: a + b, totals, m)
  totals = {k: float(v) for k, v in totals.items()}
  return dict(
    loss=totals["loss"] / totals["count"],
    accuracy=totals["correct"] / totals["count"],
    top_k_accuracy=totals["top_k_correct"] / totals["count"],
  )


def _plot(history, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [h["epoch"] for h in history]
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  left.plot(epochs, [h["train_loss"] for h in history], label="train")
  left.plot(epochs, [h["val_loss"] for h in history], label="validation")
  left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
  right.plot(epochs, [h["train_accuracy"] for h in history], label="train")
  right.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
  right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
  for ax in (left, right):
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def validation_size(num_examples, val_fraction):
  """How many of `num_examples` training examples `fit` holds out for validation: `round(N * val_fraction)`.

  Examples:
    >>> from funconv.train.loop import validation_size
    >>> validation_size(1438, 0.1)
    144
  """
  return int(round(num_examples * val_fraction))


def _split(data, val_fraction, seed):
  """`((x, y) training, (x, y) validation)`: the validation split is `val_fraction` of the training set, fixed by
  `seed`, or the test set when that is empty."""
  order = np.random.default_rng([seed, 2**31 - 1]).permutation(len(data.x_train))
  n_val = validation_size(len(order), val_fraction)
  val_idx, train_idx = order[:n_val], order[n_val:]
  val = (data.x_train[val_idx], data.y_train[val_idx]) if n_val else (data.x_test, data.y_test)
  return (data.x_train[train_idx], data.y_train[train_idx]), val


def _train_epoch(
  train_step, ts, train, position, *, epochs, batch_size, seed, mesh, ckpts, checkpoint_every, progress, steps_left
):
  """One epoch's steps from `position` (mid-epoch after a resume), with progress reports and mid-epoch checkpoints.

  Returns `(ts, running, steps_run)`, `running` the summed loss, correct count and count; stops after `steps_left`
  steps (None: no limit). A non-finite loss raises `FloatingPointError` naming the step and the last checkpoint.
  """
  x_train, y_train = train
  epoch, first = position["epoch"], position["batch"]
  steps_per_epoch = num_batches(len(x_train), batch_size)
  running = position["running"] or dict(loss=0.0, correct=0.0, count=0.0)
  steps_run, start = 0, time.perf_counter()
  rows = distributed.process_rows(mesh, batch_size)
  with _Progress(progress, steps_per_epoch, first, f"epoch {epoch + 1}/{epochs}") as bar:
    for b, (xb, yb) in enumerate(
      batches(x_train, y_train, batch_size, seed=seed, epoch=epoch, start=first, rows=rows), start=first
    ):
      ts, m = train_step(ts, *distributed.place_batch(mesh, batch_size, xb, yb))
      loss = float(m["loss"]) / float(m["count"])
      if not math.isfinite(loss):
        steps = ckpts.steps()
        last = ckpts.path(steps[-1]) if steps else "none: no checkpoint was written yet"
        raise FloatingPointError(
          f"fit: the training loss became {loss} at epoch {epoch + 1}, batch {b + 1} (step {int(ts.step)}); "
          f"stopped. The last good checkpoint is {last} (epoch {position['epoch']}, batch {position['batch']})."
        )
      for k in running:
        running[k] += float(m[k])
      steps_run += 1
      bar.update(
        loss=f"{running['loss'] / running['count']:.4f}",
        acc=f"{running['correct'] / running['count']:.3f}",
        img_s=f"{(b + 1 - first) * batch_size / (time.perf_counter() - start):.0f}",
      )
      if checkpoint_every and (b + 1) % checkpoint_every == 0 and b + 1 < steps_per_epoch:
        position = dict(position, epoch=epoch, batch=b + 1, running=running)
        ckpts.save(ts, position)
      if steps_left is not None and steps_run >= steps_left:
        break
  return ts, running, steps_run


class _Progress:
  """A live tqdm bar where stderr is a terminal; elsewhere (a log file, as under SLURM) a line every
  `LOG_SECONDS`, not the bar's carriage-return updates at every step. Silent outside process 0."""

  LOG_SECONDS = 30.0

  def __init__(self, progress, total, initial, desc):
    self.on = progress and distributed.is_main_process()
    self.live = self.on and sys.stderr.isatty()
    self.total, self.done, self.desc, self.logged = total, initial, desc, time.perf_counter()
    self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False) if self.live else None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.bar is not None:
      self.bar.close()

  def update(self, **postfix):
    self.done += 1
    if self.bar is not None:
      self.bar.update(1)
      self.bar.set_postfix(**postfix)
    elif self.on and time.perf_counter() - self.logged >= self.LOG_SECONDS:
      self.logged = time.perf_counter()
      fields = "  ".join(f"{k.replace('_', '/')} {v}" for k, v in postfix.items())
      print(f"{self.desc}  step {self.done}/{self.total}  {fields}", flush=True)


def _early_stopping(position, record, ts, best_ckpts, patience):
  """The position after the epoch `record` describes, and whether to stop: the best validation accuracy's state is
  saved to `best_ckpts`; stop once it has not improved for more than `patience` epochs (None: never)."""
  best, bad = position["best"], position["bad_epochs"] + 1
  if record["val_accuracy"] > best:
    best, bad = record["val_accuracy"], 0
    best_ckpts.save(ts, dict(epoch=record["epoch"]))
    best_ckpts.wait()  # on disk before the checkpoint that records it as the best
  position = dict(
    epoch=record["epoch"], batch=0, history=position["history"] + [record], best=best, bad_epochs=bad, running=None
  )
  return position, patience is not None and bad > patience


def _start(ts, mesh, out, ckpts, best_ckpts, resume):
  """`(train_state, position)` a run starts from, replicated over `mesh`: the newest loadable checkpoint with
  `resume` (converting a run of `.npz` checkpoints: `checkpoint.npz` and `best.npz`), else `ts` at the start, the
  directories' steps of an earlier run deleted."""
  position = dict(epoch=0, batch=0, history=[], best=-math.inf, bad_epochs=0, running=None)
  if not resume:
    distributed.barrier(f"{out}: checkpoints listed")  # every process deletes the steps it listed
    ckpts.clear()
    best_ckpts.clear()
    return distributed.replicate(mesh, ts), position
  restored = ckpts.load(ts, sharding=distributed.replicated(mesh))
  if restored is None:
    legacy = _load_npz_run(out, "checkpoint", ts)
    restored = legacy and (distributed.replicate(mesh, legacy[0]), legacy[1])
  best = None if best_ckpts.steps() else _load_npz_run(out, "best", ts)
  if best is not None:
    best_ckpts.save(distributed.replicate(mesh, best[0]), best[1])
  return (distributed.replicate(mesh, ts), position) if restored is None else restored


def _load_npz_run(out, name, ts):
  """`out/name.npz` of a run checkpointed before orbax, or where that is missing or damaged (with a warning)
  `out/name.prev.npz`, the copy its writer kept; None where neither exists."""
  paths = (out / f"{name}.npz", out / f"{name}.prev.npz")
  return checkpoint.first_loadable(paths, lambda path: checkpoint.load(path, ts))


def _report(eval_step, ts, data, batch_size, mesh, position, stopped_early, out, best_ckpts):
  """The best state (read back from `best_ckpts`: the training step donates its buffers) and the report of its test
  metrics; process 0 writes `out/metrics.json` and `out/curves.png`."""
  best_ckpts.wait()
  best = best_ckpts.load(ts, sharding=distributed.replicated(mesh))
  best_ts = ts if best is None else best[0]
  test = _evaluate(eval_step, best_ts, data.x_test, data.y_test, batch_size, mesh)
  report = dict(
    history=position["history"],
    test_loss=test["loss"],
    test_accuracy=test["accuracy"],
    test_top_k_accuracy=test["top_k_accuracy"],
    best_val_accuracy=position["best"],
    epochs_run=position["epoch"],
    stopped_early=stopped_early,
    devices=mesh.size,
    processes=jax.process_count(),
  )
  if distributed.is_main_process():
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if position["history"]:
      _plot(position["history"], out / "curves.png")
  return best_ts, report


def fit(
  model,
  data,
  optimizer,
  *,
  epochs=10,
  batch_size=128,
  seed=0,
  out_dir="out",
  val_fraction=0.1,
  patience=None,
  augment=None,
  normalize=None,
  label_smoothing=0.0,
  resume=False,
  checkpoint_every=None,
  progress=True,
  max_steps=None,
  mesh=None,
  max_to_keep=2,
):
  """Train `model` on `data` and evaluate it: returns `(train_state, report)`.

  Per epoch: one pass over the training split, shuffled by `(seed, epoch)`, in batches of
  `batch_size` (the last partial batch dropped), through `make_steps`' `train_step`, with a tqdm
  bar showing loss, accuracy and images/s where stderr is a terminal (elsewhere, as in a log
  file, a line every 30 s); evaluation on the validation split (`val_fraction`
  of the training set, fixed by `seed`; the test set where `val_fraction` is 0); a checkpoint
  in `out_dir/checkpoints/<step>` (`Checkpoints`: orbax, written in the background; also every
  `checkpoint_every` steps within an epoch; the newest `max_to_keep` kept); the best validation
  accuracy's state in `out_dir/best/<step>`; early stopping once validation accuracy has not
  improved for more than `patience` epochs; a line of metrics printed where `progress`. At the
  end: the test metrics of the best epoch's state, `out_dir/metrics.json` (the report) and
  `out_dir/curves.png` (loss and accuracy per epoch).

  `resume=True` continues from the newest checkpoint in `out_dir/checkpoints` (mid-epoch
  included), or from the one before where that is damaged (with a warning), on this run's
  devices whatever the device and process count that wrote it, and reproduces the uninterrupted
  run bit for bit on CPU (on the same device count); a run directory of `.npz` checkpoints from
  before orbax (`checkpoint.npz`, `best.npz`) is read and continued in the new layout; with no
  checkpoint it starts afresh. Without `resume`, the steps of an earlier run in `out_dir` are
  deleted first. `max_steps` stops after that many training steps of this call (for tests and
  benchmarks), with no evaluation, test metrics or files beyond the checkpoints written so far.

  Data parallel: the steps run on `mesh` (default: every device JAX sees, in every process),
  each global batch of `batch_size` split over its `"data"` axis, the train state replicated, so
  that N devices compute what one device computes for the same global batch (BatchNorm's
  statistics and dropout masks included), to float rounding. In a run of several processes
  (`funconv.train.distributed.initialize`), each reads only its devices' rows of every batch;
  process 0 alone prints and writes the files, and every process returns the same result.

  Args:
    model: a funconv `Layer` mapping one example `data.x_train.shape[1:]` to `(num_classes,)`
      logits.
    data: a `funconv.data.DataSet`: `x_train` `(N, *example_shape)` float, `y_train` `(N,)`
      integer labels, `x_test`, `y_test` alike, `num_classes` (e.g. `funconv.data.digits()`).
    optimizer: an optax `GradientTransformation` (e.g. from `funconv.train.make_optimizer`).
    epochs: the number of epochs, an int (default 10).
    batch_size: the training and evaluation batch size (default 128).
    seed: the seed of the initialisation, the validation split, the data order and the step
      keys (default 0).
    out_dir: the directory of the checkpoints, `metrics.json` and `curves.png` (default `"out"`,
      created if missing).
    val_fraction: the share of the training set held out for validation (default 0.1).
    patience: early stopping: stop after more than this many epochs in a row without improvement
      (default None: never stop).
    augment: as in `make_steps` (default None).
    normalize: `(mean, std)` as in `make_steps` (default None).
    label_smoothing: the training loss's label smoothing (default 0.0).
    resume: continue from `out_dir`'s checkpoint (default False: start afresh, overwriting it).
    checkpoint_every: also checkpoint every this many steps within an epoch (default None).
    progress: show the progress bar and print a line per epoch (default True).
    max_steps: stop after this many training steps (default None: no limit).
    mesh: a mesh with a `"data"` axis (`funconv.train.distributed.data_mesh(n)` for the first `n`
      devices; default None: all of them).
    max_to_keep: how many of the newest checkpoints to keep (default 2).

  Returns:
    `(train_state, report)`. `train_state` is the best epoch's `TrainState` (the last one with
    `max_steps`). `report` is a dict: `history` (one dict per epoch: `epoch`, `train_loss`,
    `train_accuracy`, `val_loss`, `val_accuracy`, `seconds`), `test_loss`, `test_accuracy`,
    `test_top_k_accuracy` (top 5), `best_val_accuracy`, `epochs_run`, `stopped_early`, `devices`
    and `processes`, as in `metrics.json`; with `max_steps` reached, only `history` and `stopped_at_step`.

  Raises:
    ValueError: `batch_size` is larger than the training split or does not divide over the mesh's
      devices (before anything is compiled); with `resume`, the checkpoints are damaged or hold
      another model's state.
    FloatingPointError: the training loss became NaN or infinite, naming the step and the last
      good checkpoint (left intact).

  Examples:
    >>> import os, optax
    >>> import funconv as fc
    >>> data = fc.data.digits()                   # 1,438 training and 359 test 8x8x1 images, 10 classes
    >>> net = fc.serial(fc.Flatten, fc.Dense(10))     # fc.models.small_cnn() reaches about 99% in 15 epochs
    >>> ts, report = fc.train.fit(net, data, optax.adam(1e-2), epochs=2, out_dir="run", progress=False)
    >>> int(ts.step), report["epochs_run"], report["stopped_early"]   # 10 steps of 128 per epoch
    (20, 2, False)
    >>> sorted(report["history"][0])
    ['epoch', 'seconds', 'train_accuracy', 'train_loss', 'val_accuracy', 'val_loss']
    >>> 0.5 < report["test_accuracy"] <= 1.0
    True
    >>> sorted(os.listdir("run")), sorted(os.listdir("run/checkpoints")), os.listdir("run/best")
    (['best', 'checkpoints', 'curves.png', 'metrics.json'], ['10', '20'], ['20'])
    >>> fc.train.fit(net, data, optax.adam(1e-2), out_dir="quick", progress=False, max_steps=3)[1]
    {'history': [], 'stopped_at_step': 3}

    Resuming, here for a third epoch: `fc.train.fit(net, data, optax.adam(1e-2), epochs=3,
    out_dir="run", resume=True)`.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  mesh = distributed.data_mesh() if mesh is None else mesh
  distributed.check_batch_size(mesh, batch_size)
  train, val = _split(data, val_fraction, seed)
  if num_batches(len(train[0]), batch_size) == 0:
    raise ValueError(f"fit: batch_size {batch_size} is larger than the training split ({len(train[0])} examples)")
  train_step, eval_step = make_steps(
    model, optimizer, augment=augment, normalize=normalize, label_smoothing=label_smoothing, mesh=mesh
  )
  ts = init_train_state(model, optimizer, train[0].shape[1:], seed)
  with (
    checkpoint.Checkpoints(out / "checkpoints", max_to_keep) as ckpts,
    checkpoint.Checkpoints(out / "best", max_to_keep=1) as best_ckpts,
  ):
    ts, position = _start(ts, mesh, out, ckpts, best_ckpts, resume)
    stopped_early, steps_run = False, 0
    while position["epoch"] < epochs and not stopped_early:
      start = time.perf_counter()
      ts, running, n = _train_epoch(
        train_step,
        ts,
        train,
        position,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        mesh=mesh,
        ckpts=ckpts,
        checkpoint_every=checkpoint_every,
        progress=progress,
        steps_left=None if max_steps is None else max_steps - steps_run,
      )
      steps_run += n
      if max_steps is not None and steps_run >= max_steps:
        return ts, dict(history=position["history"], stopped_at_step=int(ts.step))
      metrics = _evaluate(eval_step, ts, *val, batch_size, mesh)
      record = dict(
        epoch=position["epoch"] + 1,
        train_loss=running["loss"] / running["count"],
        train_accuracy=running["correct"] / running["count"],
        val_loss=metrics["loss"],
        val_accuracy=metrics["accuracy"],
        seconds=time.perf_counter() - start,
      )
      position, stopped_early = _early_stopping(position, record, ts, best_ckpts, patience)
      ckpts.save(ts, position)
      if progress and distributed.is_main_process():
        print(
          f"epoch {record['epoch']:3d}  train loss {record['train_loss']:.4f}  acc {record['train_accuracy']:.4f}  "
          f"val loss {record['val_loss']:.4f}  acc {record['val_accuracy']:.4f}  ({record['seconds']:.1f} s)",
          flush=True,
        )
    return _report(eval_step, ts, data, batch_size, mesh, position, stopped_early, out, best_ckpts)
