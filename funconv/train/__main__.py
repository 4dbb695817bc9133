"""`funconv-train` (or `python -m funconv.train`): train a model on a data set from the command line.

With no arguments: a small CNN on scikit-learn's embedded handwritten digits, about 20 s on two
CPU cores, ending with the test accuracy and writing out/curves.png and out/metrics.json.
"""

import argparse
import math
import pathlib
import sys

import jax

from funconv import data as datasets
from funconv.data.augment import augmenter
from funconv.host_memory import reuse_host_memory
from funconv.models import MODELS
from funconv.train import distributed
from funconv.train.loop import fit, validation_size
from funconv.train.optimizers import OPTIMIZERS, make_optimizer

VAL_FRACTION = 0.1  # the share of the training set held out for validation
CIFAR_MEAN_STD = {  # per-channel mean and standard deviation of each training set
  "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
  "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def run(argv=None):
  """Parse `argv`, load the data set, build the model and optimizer, `fit`, print the test accuracy.

  The options (`funconv-train --help` lists them): `--model` (a name of `funconv.models.MODELS`,
  default `small_cnn`, built with the data set's number of classes), `--dataset` (`digits`,
  default; the IDX sets such as `mnist`; `cifar10`, `cifar100`, which get random crops with
  4 pixels of padding, flips and per-channel normalisation), `--data-dir`, `--download`,
  `--epochs` (15), `--batch-size` (64), `--lr` (2e-3), `--optimizer` (`sgd`, `adam`, default,
  or `adamw`), `--schedule` (`cosine`, default, decaying over the run's steps, or `constant`),
  `--clip` (global gradient norm), `--label-smoothing` (0), `--patience` (None), `--seed` (0),
  `--out` (`out`), `--resume`, `--checkpoint-every` (steps), `--max-to-keep` (2), `--no-progress`, `--devices` (the
  first N devices; default all), and for a run of several processes `--coordinator-address
  HOST:PORT`, `--num-processes`, `--process-id` (`jax.distributed.initialize`'s; without them JAX
  detects SLURM, Open MPI, Kubernetes and Cloud TPU itself). The optimizer is `make_optimizer`'s; the run is
  `fit` with 10% of the training set held out for validation, writing to `--out`.

  Args:
    argv: the arguments, a list of strings without the program name (default None: `sys.argv[1:]`).

  Returns:
    `fit`'s report, a dict (`test_accuracy`, `test_top_k_accuracy`, `history`, ...).

  Raises:
    SystemExit: an invalid option or value (status 2, with argparse's usage message); a data set
      that cannot be loaded, or a training loss that became NaN or infinite (status 1, with the
      message); `--help` (status 0).

  Examples:
    From a shell: the default run (a small CNN on the embedded digits, about 20 s on two CPU
    cores), then a CIFAR-10 ResNet-20, its files downloaded into `data/`:

        funconv-train
        funconv-train --model resnet20 --dataset cifar10 --data-dir data --download --optimizer sgd --lr 0.1

    From Python, `run(["--epochs", "1", "--out", "quick", "--no-progress"])` returns the report.
  """
  parser = argparse.ArgumentParser(prog="funconv-train", description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn", choices=sorted(MODELS))
  parser.add_argument("--dataset", default="digits", choices=["digits", *datasets.sets.IDX_SETS, "cifar10", "cifar100"])
  parser.add_argument("--data-dir", default=None, help="directory holding the data set's standard files")
  parser.add_argument(
    "--download", action="store_true", help="fetch the standard files missing from --data-dir first (SHA-256 checked)"
  )
  parser.add_argument("--epochs", type=int, default=15)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--lr", type=float, default=2e-3)
  parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
  parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
  parser.add_argument("--clip", type=float, default=None, help="clip gradients to this global norm")
  parser.add_argument("--label-smoothing", type=float, default=0.0)
  parser.add_argument(
    "--patience",
    type=int,
    default=None,
    help="early stopping: stop after more than this many epochs in a row without improvement",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="out", help="directory for checkpoints, curves.png and metrics.json")
  parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
  parser.add_argument(
    "--checkpoint-every", type=int, default=None, help="also checkpoint every N steps within an epoch"
  )
  parser.add_argument("--max-to-keep", type=int, default=2, help="how many of the newest checkpoints to keep")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.add_argument("--devices", type=int, default=None, help="train on the first N devices (default: all)")
  parser.add_argument(
    "--coordinator-address", default=None, help="HOST:PORT of process 0, to join a run of several processes"
  )
  parser.add_argument("--num-processes", type=int, default=None, help="the number of processes of the run")
  parser.add_argument("--process-id", type=int, default=None, help="this process's index in [0, --num-processes)")
  args = parser.parse_args(argv)
  for flag, value, ok, need in (
    ("--epochs", args.epochs, args.epochs >= 1, "an int >= 1"),
    ("--batch-size", args.batch_size, args.batch_size >= 1, "an int >= 1"),
    ("--lr", args.lr, math.isfinite(args.lr) and args.lr > 0, "a finite number > 0"),
    ("--clip", args.clip, args.clip is None or math.isfinite(args.clip) and args.clip > 0, "a finite number > 0"),
    ("--label-smoothing", args.label_smoothing, 0 <= args.label_smoothing <= 1, "in [0, 1]"),
    ("--patience", args.patience, args.patience is None or args.patience >= 0, "an int >= 0"),
    ("--seed", args.seed, args.seed >= 0, "an int >= 0"),
    (
      "--checkpoint-every",
      args.checkpoint_every,
      args.checkpoint_every is None or args.checkpoint_every >= 1,
      "an int >= 1",
    ),
    ("--max-to-keep", args.max_to_keep, args.max_to_keep >= 1, "an int >= 1"),
    ("--devices", args.devices, args.devices is None or args.devices >= 1, "an int >= 1"),
    ("--num-processes", args.num_processes, args.num_processes is None or args.num_processes >= 1, "an int >= 1"),
    ("--process-id", args.process_id, args.process_id is None or args.process_id >= 0, "an int >= 0"),
    ("--out", args.out, not pathlib.Path(args.out).exists() or pathlib.Path(args.out).is_dir(), "a directory"),
  ):
    if not ok:
      parser.error(f"{flag} must be {need}, got {value}")

  try:
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    mesh = distributed.data_mesh(args.devices)
    distributed.check_batch_size(mesh, args.batch_size, "funconv-train: --batch-size")
    data = datasets.load(args.dataset, args.data_dir, download=args.download)
  except (OSError, ValueError, RuntimeError) as err:
    sys.exit(f"funconv-train: {err}")
  say = print if distributed.is_main_process() else lambda *a, **k: None
  cifar = args.dataset.startswith("cifar")
  model = MODELS[args.model](num_classes=data.num_classes)
  train_examples = len(data.x_train) - validation_size(len(data.x_train), VAL_FRACTION)
  steps = args.epochs * (train_examples // args.batch_size)
  optimizer = make_optimizer(args.optimizer, args.lr, steps, clip=args.clip, schedule=args.schedule)
  say(
    f"funconv-train: {args.model} on {args.dataset} ({len(data.x_train)} train / {len(data.x_test)} test, "
    f"{'x'.join(map(str, data.x_train.shape[1:]))}), {args.optimizer} lr {args.lr}, {args.epochs} epochs, "
    f"{mesh.size} device{'s' * (mesh.size > 1)} in {jax.process_count()} process{'es' * (jax.process_count() > 1)}"
  )
  try:
    _, report = fit(
      model,
      data,
      optimizer,
      epochs=args.epochs,
      batch_size=args.batch_size,
      seed=args.seed,
      val_fraction=VAL_FRACTION,
      out_dir=args.out,
      patience=args.patience,
      label_smoothing=args.label_smoothing,
      augment=augmenter(crop_padding=4, flip=True) if cifar else None,
      normalize=CIFAR_MEAN_STD.get(args.dataset),
      resume=args.resume,
      checkpoint_every=args.checkpoint_every,
      progress=not args.no_progress,
      mesh=mesh,
      max_to_keep=args.max_to_keep,
    )
  except FloatingPointError as err:
    sys.exit(f"funconv-train: {err}")
  say(
    f"test accuracy: {report['test_accuracy']:.4f} (top-5 {report['test_top_k_accuracy']:.4f}); "
    f"curves in {args.out}/curves.png, metrics in {args.out}/metrics.json"
  )
  return report


def main(argv=None):
  """The `funconv-train` console script and `python -m funconv.train`: `run(argv)`, with freed memory kept for the
  next step (`funconv.reuse_host_memory`, set before JAX starts).

  Args:
    argv: as in `run` (default None: the command line).

  Returns:
    None, so that the console script exits with status 0 (a console script exits with its
    entry point's return value).

  Raises:
    SystemExit: as `run`.
  """
  reuse_host_memory()
  run(argv)


if __name__ == "__main__":
  main()
