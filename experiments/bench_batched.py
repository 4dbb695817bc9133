"""Does per-example layer code cost anything? `fc.batched` against batch-aware ops and plain vmap.

Times the forward+backward pass (gradient of `sum(logits ** 2)` for every parameter) of one
small CNN written three ways, interleaved in one process, medians after compile and warm-up:

- `batch-aware`: the network on `funconv.ops` directly, arrays with a batch axis;
- `fc.batched`: the same network from funconv layers, per example, through `fc.batched`;
- `jax.vmap`: the same layers under a hand-written `jax.vmap` (what `batched` avoids).

    python experiments/bench_batched.py [--batch 128] [--reps 15]
"""
import argparse
import json
import pathlib

import jax
import jax.numpy as jnp

import funconv as fc
from bench_conv import interleaved_medians


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--reps", type=int, default=15)
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_batched.json"))
  args = parser.parse_args()

  net = fc.serial(fc.Conv(16, (3, 3), padding="SAME"), fc.Relu, fc.MaxPool((2, 2), (2, 2)),
                  fc.Conv(32, (3, 3), padding="SAME"), fc.Relu, fc.MaxPool((2, 2), (2, 2)),
                  fc.Flatten, fc.Dense(10))
  _, params, state = net.init(jax.random.key(0), (28, 28, 1))
  x = jax.random.normal(jax.random.key(1), (args.batch, 28, 28, 1))

  def batch_aware(params, x):
    (w1, b1), _, _, (w2, b2), _, _, _, (w3, b3) = params
    h = fc.ops.max_pool(jax.nn.relu(fc.ops.conv(x, w1, padding="SAME") + b1), (2, 2), (2, 2))
    h = fc.ops.max_pool(jax.nn.relu(fc.ops.conv(h, w2, padding="SAME") + b2), (2, 2), (2, 2))
    return h.reshape(h.shape[0], -1) @ w3 + b3

  def layers_batched(params, x):
    return fc.batched(net.apply)(params, state, x)[0]

  def layers_vmapped(params, x):
    return jax.vmap(lambda x: net.apply(params, state, x)[0])(x)

  variants = {"batch-aware ops": batch_aware, "fc.batched layers": layers_batched, "jax.vmap layers": layers_vmapped}
  steps = [jax.jit(jax.grad(lambda p, x, f=f: jnp.sum(f(p, x) ** 2))) for f in variants.values()]
  times = interleaved_medians(steps, (params, x), args.reps)
  base = times[0]
  print(f"forward+backward, batch {args.batch}, 28x28x1 CNN, median of {args.reps} interleaved runs\n")
  print("| variant | ms | relative to batch-aware |\n|---|---|---|")
  for name, t in zip(variants, times):
    print(f"| {name} | {t * 1e3:.2f} | {t / base:.3f} |")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(dict(batch=args.batch, reps=args.reps,
                                 ms={n: t * 1e3 for n, t in zip(variants, times)},
                                 relative={n: t / base for n, t in zip(variants, times)}), indent=2))
  print(f"\nwrote {out}")


if __name__ == "__main__":
  main()
