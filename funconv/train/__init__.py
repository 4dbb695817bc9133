"""Training: jit-compiled steps over batched per-example losses, optax updates, the `fit` loop,
orbax checkpoints, and the `funconv-train` command."""

from funconv.train.checkpoint import Checkpoints
from funconv.train.checkpoint import load as load_checkpoint
from funconv.train.checkpoint import save as save_checkpoint
from funconv.train.loop import fit
from funconv.train.steps import TrainState, cross_entropy, init_train_state, make_steps, top_k_correct
from funconv.train.optimizers import make_optimizer

__all__ = [
  "Checkpoints",
  "TrainState",
  "cross_entropy",
  "fit",
  "init_train_state",
  "load_checkpoint",
  "make_optimizer",
  "make_steps",
  "save_checkpoint",
  "top_k_correct",
]
