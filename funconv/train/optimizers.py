"""`make_optimizer`: the optimizers and learning-rate schedules of `funconv-train`, by name."""

import optax

OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(name, lr, steps, weight_decay=5e-4, momentum=0.9, clip=None, schedule="cosine"):
  """An optax optimizer by name, with a learning-rate schedule and optional gradient clipping.

  Args:
    name: `"sgd"` (Nesterov momentum `momentum`), `"adam"` or `"adamw"` (decoupled weight decay
      `weight_decay`).
    lr: the peak learning rate.
    steps: the number of training steps the cosine schedule decays over (to 0 at `steps`).
    weight_decay: AdamW's decay rate.
    momentum: SGD's momentum.
    clip: clip each update's gradients to this global norm first (None: no clipping).
    schedule: `"cosine"` (`optax.cosine_decay_schedule(lr, steps)`) or `"constant"`.

  Returns:
    An `optax.GradientTransformation`.

  Raises:
    ValueError: an unknown `name` or `schedule`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import funconv as fc
    >>> opt = fc.train.make_optimizer("sgd", lr=0.1, steps=100, clip=1.0)
    >>> params = {"w": jnp.zeros(4)}
    >>> updates, _ = opt.update({"w": jnp.full(4, 10.0)}, opt.init(params), params)
    >>> [round(float(u), 3) for u in updates["w"]]   # clipped to norm 1: 0.5 each; Nesterov: -0.1 * 1.9 * 0.5
    [-0.095, -0.095, -0.095, -0.095]
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"make_optimizer: name must be one of {OPTIMIZERS}, got {name!r}")
  if schedule not in ("cosine", "constant"):
    raise ValueError(f"make_optimizer: schedule must be 'cosine' or 'constant', got {schedule!r}")
  rate = optax.cosine_decay_schedule(lr, max(steps, 1)) if schedule == "cosine" else lr
  optimizer = {
    "sgd": lambda: optax.sgd(rate, momentum=momentum, nesterov=True),
    "adam": lambda: optax.adam(rate),
    "adamw": lambda: optax.adamw(rate, weight_decay=weight_decay),
  }[name]()
  return optax.chain(optax.clip_by_global_norm(clip), optimizer) if clip else optimizer
