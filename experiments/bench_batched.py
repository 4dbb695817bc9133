"""Does per-example layer code cost anything? A plain `jax.vmap` of funconv layers against batch-aware ops.

Times two workloads of one small CNN (conv 16, BatchNorm, ReLU, max-pool 2, conv 32, BatchNorm,
ReLU, max-pool 2, dense 10 on 28x28x1), interleaved in one process, medians after compile and
warm-up:

- `fwd+bwd`: the gradient of `sum(logits ** 2)` in every parameter (BatchNorm in evaluation mode);
- `train step`: softmax cross-entropy with BatchNorm in training mode (batch statistics, updated
  running averages) and an optax SGD update, as `funconv.train` runs it.

Each written four ways:

- `batch-aware ops`: `funconv.ops` on arrays with a batch axis, by hand (what batch-aware layers ran);
- `fc.batched layers`: funconv's per-example layers through `fc.batched`;
- `jax.vmap layers`: the same layers under a hand-written `jax.vmap` with an axis name;
- `vmap, custom_vjp conv`: per-example code whose convolution is a `jax.custom_vjp` over
  `funconv.ops.conv` (how the convolution was differentiable before it became a primitive): a
  vmap batches its backward rule, so it materialises one kernel gradient per example.

    python experiments/bench_batched.py [--batch 128] [--reps 15]
"""

import argparse
import pathlib

import jax
import jax.numpy as jnp
import optax
from jax import lax

import funconv as fc
from bench_conv import interleaved_medians, write_results

EPS = 1e-5


@jax.custom_vjp
def conv_custom_vjp(x, w):
  return fc.ops.conv(x, w, padding="SAME")


def _conv_fwd(x, w):
  return conv_custom_vjp(x, w), (x, w)


def _conv_bwd(res, g):
  return jax.vjp(lambda x, w: fc.ops.conv(x, w, padding="SAME"), *res)[1](g)


conv_custom_vjp.defvjp(_conv_fwd, _conv_bwd)


def network():
  return fc.serial(
    fc.Conv(16, (3, 3), padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.MaxPool((2, 2), (2, 2)),
    fc.Conv(32, (3, 3), padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.MaxPool((2, 2), (2, 2)),
    fc.Flatten,
    fc.Dense(10),
  )


def by_hand(conv, batch_mean, params, state, x, train):
  """The network on `funconv.ops`; `batch_mean(v)` averages per-example statistics over the batch."""
  (w1, b1), bn1, _, _, (w2, b2), bn2, _, _, _, (w3, b3) = params
  new_state = list(state)
  h = x
  for i, (w, b, (beta, gamma)) in zip((1, 5), ((w1, b1, bn1), (w2, b2, bn2))):
    h = conv(h, w) + b
    if train:
      spatial = tuple(range(h.ndim - 3, h.ndim - 1))
      mean = batch_mean(jnp.mean(h, axis=spatial))
      var = batch_mean(jnp.mean(jnp.square(h - mean[..., None, None, :]), axis=spatial))
      new_state[i] = tuple(0.9 * old + 0.1 * new for old, new in zip(state[i], (mean, var)))
    else:
      mean, var = state[i]
    h = (h - mean[..., None, None, :]) * lax.rsqrt(var[..., None, None, :] + EPS) * gamma + beta
    h = fc.ops.max_pool(jax.nn.relu(h), (2, 2), (2, 2))
  return h.reshape(*h.shape[:-3], -1) @ w3 + b3, tuple(new_state)


def variants(net):
  batch_aware = lambda p, s, x, train: by_hand(
    lambda h, w: fc.ops.conv(h, w, padding="SAME"), lambda v: jnp.mean(v, axis=0), p, s, x, train
  )
  one_example = lambda p, s, x, train: by_hand(conv_custom_vjp, lambda v: lax.pmean(v, "batch"), p, s, x, train)
  per_example = lambda apply: (
    lambda p, s, x, train: jax.vmap(lambda x: apply(p, s, x, train=train), out_axes=(0, None), axis_name="batch")(x)
  )
  return {
    "batch-aware ops": batch_aware,
    "fc.batched layers": lambda p, s, x, train: fc.batched(net.apply)(p, s, x, train=train),
    "jax.vmap layers": per_example(net.apply),
    "vmap, custom_vjp conv": per_example(lambda p, s, x, train: one_example(p, s, x, train)),
  }


def workloads(forward):
  """`(fwd+bwd, train step)` of `forward(params, state, x, train) -> (logits, state)`, jitted."""
  optimizer = optax.sgd(0.01, momentum=0.9)

  def fwd_bwd(params, state, opt_state, x, labels):
    return jax.grad(lambda p: jnp.sum(forward(p, state, x, False)[0] ** 2))(params)

  def train_step(params, state, opt_state, x, labels):
    def loss(p):
      logits, new_state = forward(p, state, x, True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state

    grads, new_state = jax.grad(loss, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state

  return jax.jit(fwd_bwd), jax.jit(train_step), optimizer


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--reps", type=int, default=15)
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_batched.json"))
  args = parser.parse_args()

  net = network()
  _, params, state = net.init(jax.random.key(0), (28, 28, 1))
  x = jax.random.normal(jax.random.key(1), (args.batch, 28, 28, 1))
  labels = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
  named = variants(net)
  steps = {name: workloads(f) for name, f in named.items()}
  opt_state = next(iter(steps.values()))[2].init(params)
  arguments = (params, state, opt_state, x, labels)
  reference = steps["batch-aware ops"][1](*arguments)
  for name, (_, train_step, _) in steps.items():  # every variant is the same computation
    for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(train_step(*arguments))):
      assert jnp.allclose(a, b, rtol=1e-3, atol=1e-4), name
  results = {}
  print(f"batch {args.batch}, 28x28x1 CNN with BatchNorm, median of {args.reps} interleaved runs\n")
  print("| workload | variant | ms | relative to batch-aware |\n|---|---|---|---|")
  for w, workload in enumerate(("fwd+bwd", "train step")):
    times = interleaved_medians([s[w] for s in steps.values()], arguments, args.reps)
    results[workload] = {n: dict(ms=t * 1e3, relative=t / times[0]) for n, t in zip(named, times)}
    for n, t in zip(named, times):
      print(f"| {workload} | {n} | {t * 1e3:.2f} | {t / times[0]:.3f} |")
  write_results(args.out, batch=args.batch, reps=args.reps, backend=jax.default_backend(), results=results)


if __name__ == "__main__":
  main()
