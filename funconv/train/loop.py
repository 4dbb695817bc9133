"""`fit`: the training loop, with evaluation, early stopping, checkpoints, curves and metrics."""
import json
import math
import pathlib
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from funconv.data.pipeline import batches, num_batches
from funconv.train import checkpoint
from funconv.train.steps import init_train_state, make_steps


def _evaluate(eval_step, ts, x, y, batch_size):
  totals = None
  for xb, yb in batches(x, y, batch_size, shuffle=False, drop_remainder=False):
    m = eval_step(ts, xb, yb)
    totals = m if totals is None else jax.tree.map(lambda a, b: a + b, totals, m)
  totals = {k: float(v) for k, v in totals.items()}
  return dict(loss=totals["loss"] / totals["count"], accuracy=totals["correct"] / totals["count"],
              top_k_accuracy=totals["top_k_correct"] / totals["count"])


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


def fit(model, data, optimizer, *, epochs=10, batch_size=128, seed=0, out_dir="out", val_fraction=0.1,
        patience=None, augment=None, normalize=None, label_smoothing=0.0, resume=False, checkpoint_every=None,
        progress=True, max_steps=None):
  """Train `model` on `data` (a `funconv.data.DataSet`) and evaluate it; returns `(train_state, report)`.

  Per epoch: one shuffled pass (order from `(seed, epoch)`, last partial batch dropped) with a tqdm
  bar showing loss, accuracy and images/s; evaluation on a validation split (`val_fraction` of
  the training set, fixed by `seed`); a checkpoint `out_dir/checkpoint.npz` (also every
  `checkpoint_every` steps); early stopping once validation accuracy has not improved for
  `patience` epochs, keeping the best epoch's state. At the end: test metrics of the best state,
  `out_dir/curves.png` and `out_dir/metrics.json`.

  `resume=True` continues from `out_dir/checkpoint.npz` (mid-epoch included), or from the previous
  checkpoint `checkpoint.prev.npz` where that one is missing or damaged (with a warning), and
  reproduces the uninterrupted run bit for bit on CPU. A NaN or infinite loss raises
  `FloatingPointError` naming the step; the last checkpoint written before it is intact.
  `max_steps` stops early (for tests and benchmarks).
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  ckpt_path, best_path = out / "checkpoint.npz", out / "best.npz"
  order = np.random.default_rng([seed, 2**31 - 1]).permutation(len(data.x_train))
  n_val = int(round(len(order) * val_fraction))
  val_idx, train_idx = order[:n_val], order[n_val:]
  x_train, y_train = data.x_train[train_idx], data.y_train[train_idx]
  x_val, y_val = (data.x_train[val_idx], data.y_train[val_idx]) if n_val else (data.x_test, data.y_test)

  train_step, eval_step = make_steps(model, optimizer, augment=augment, normalize=normalize,
                                     label_smoothing=label_smoothing)
  ts = init_train_state(model, optimizer, x_train.shape[1:], seed)
  position = dict(epoch=0, batch=0, history=[], best=-math.inf, bad_epochs=0, running=None)
  restored = checkpoint.load_latest(ckpt_path, ts) if resume else None
  if restored is not None:
    ts, position = restored
  steps_per_epoch = num_batches(len(x_train), batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"fit: batch_size {batch_size} is larger than the training split ({len(x_train)} examples)")

  epoch, stopped_early, steps_run = position["epoch"], False, 0
  while epoch < epochs and not stopped_early:
    running = position["running"] or dict(loss=0.0, correct=0.0, count=0.0)
    bar = tqdm(total=steps_per_epoch, initial=position["batch"], desc=f"epoch {epoch + 1}/{epochs}",
               disable=not progress, leave=False)
    start = time.perf_counter()
    for b, (xb, yb) in enumerate(batches(x_train, y_train, batch_size, seed=seed, epoch=epoch,
                                         start=position["batch"]), start=position["batch"]):
      ts, m = train_step(ts, xb, yb)
      loss = float(m["loss"]) / float(m["count"])
      if not math.isfinite(loss):
        raise FloatingPointError(
            f"fit: the training loss became {loss} at epoch {epoch + 1}, batch {b + 1} (step {int(ts.step)}); "
            f"stopped. The last good checkpoint is {ckpt_path} (epoch {position['epoch']}, batch {position['batch']}).")
      for k in running:
        running[k] += float(m[k])
      steps_run += 1
      bar.update(1)
      bar.set_postfix(loss=f"{running['loss'] / running['count']:.4f}",
                      acc=f"{running['correct'] / running['count']:.3f}",
                      img_s=f"{(b + 1 - position['batch']) * batch_size / (time.perf_counter() - start):.0f}")
      if checkpoint_every and (b + 1) % checkpoint_every == 0 and b + 1 < steps_per_epoch:
        position = dict(position, epoch=epoch, batch=b + 1, running=running)
        checkpoint.save(ckpt_path, ts, position)
      if max_steps is not None and steps_run >= max_steps:
        bar.close()
        return ts, dict(history=position["history"], stopped_at_step=int(ts.step))
    bar.close()
    val = _evaluate(eval_step, ts, x_val, y_val, batch_size)
    record = dict(epoch=epoch + 1, train_loss=running["loss"] / running["count"],
                  train_accuracy=running["correct"] / running["count"], val_loss=val["loss"],
                  val_accuracy=val["accuracy"], seconds=time.perf_counter() - start)
    history = position["history"] + [record]
    best, bad = position["best"], position["bad_epochs"] + 1
    if val["accuracy"] > best:
      best, bad = val["accuracy"], 0
      checkpoint.save(best_path, ts, dict(epoch=epoch + 1))
    stopped_early = patience is not None and bad > patience
    epoch += 1
    position = dict(epoch=epoch, batch=0, history=history, best=best, bad_epochs=bad, running=None)
    checkpoint.save(ckpt_path, ts, position)
    if progress:
      print(f"epoch {epoch:3d}  train loss {record['train_loss']:.4f}  acc {record['train_accuracy']:.4f}  "
            f"val loss {val['loss']:.4f}  acc {val['accuracy']:.4f}  ({record['seconds']:.1f} s)", flush=True)

  # The training step donates its input buffers, so the best state is read back from its file.
  best = checkpoint.load_latest(best_path, ts)
  best_ts = ts if best is None else best[0]
  test = _evaluate(eval_step, best_ts, data.x_test, data.y_test, batch_size)
  report = dict(history=position["history"], test_loss=test["loss"], test_accuracy=test["accuracy"],
                test_top_k_accuracy=test["top_k_accuracy"], best_val_accuracy=position["best"],
                epochs_run=epoch, stopped_early=stopped_early)
  (out / "metrics.json").write_text(json.dumps(report, indent=2))
  if position["history"]:
    _plot(position["history"], out / "curves.png")
  return best_ts, report
