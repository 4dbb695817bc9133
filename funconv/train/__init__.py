"""Training: jit-compiled steps over batched per-example losses, optax updates, the `fit` loop,
atomic checkpoints, and the `funconv-train` command."""
from funconv.train.checkpoint import load as load_checkpoint
from funconv.train.checkpoint import save as save_checkpoint
from funconv.train.loop import fit
from funconv.train.steps import TrainState, cross_entropy, init_train_state, make_steps, top_k_correct
