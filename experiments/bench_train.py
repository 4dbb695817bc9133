"""Training-step throughput: funconv's convolution against native XLA convolution, same model.

For LeNet-5 (28x28x1) and the CIFAR ResNet-20 (32x32x3), batch 128 (and on request ResNet-50,
224x224x3, at the batch given): images per second of the
whole training step (forward, backward, Adam update; `funconv.train.make_steps`), with
funconv's convolution and with the identical model whose `funconv.ops.conv` is swapped for
`lax.conv_general_dilated` while it is traced (the layers, batching, loss and optimizer are
the same code). Steps run interleaved in one process; medians after compile and warm-up.
Also reports compile time (tracing, lowering and XLA's compilation of the step: the median of
`--compile-reps` compiles of each, alternating) and the compiled step's memory (arguments +
temporaries). Freed memory stays with the process for the next step (`funconv.reuse_host_memory`)
unless `--fresh-memory`.

    python experiments/bench_train.py [--reps 50] [--batch 128] [--compile-reps 3]
    python experiments/bench_train.py --models ResNet-50 --batch 8 --reps 0   # compile time only
"""

import argparse
import contextlib
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funconv as fc
from bench_conv import host_memory_option, write_results
from funconv import models, train

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the tests' oracle
from tests.oracle import native_conv  # noqa: E402


@contextlib.contextmanager
def native_convolution():
  original = fc.ops.conv
  fc.ops.conv = native_conv
  try:
    yield
  finally:
    fc.ops.conv = original


def compiled_step(model, shape, batch, native):
  optimizer = optax.adam(1e-3)
  ts = train.init_train_state(model, optimizer, shape)
  step, _ = train.make_steps(model, optimizer)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, *shape)), jnp.float32)
  y = jnp.asarray(np.arange(batch) % 10, jnp.int32)
  with native_convolution() if native else contextlib.nullcontext():
    start = time.perf_counter()
    compiled = step.lower(ts, x, y).compile()
    compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  mib = (memory.argument_size_in_bytes + memory.temp_size_in_bytes) / 2**20 if memory else float("nan")
  return compiled, ts, x, y, compile_s, mib


CASES = {
  "LeNet-5": (models.lenet5, (28, 28, 1)),
  "ResNet-20": (models.resnet20, (32, 32, 3)),
  "ResNet-50": (models.resnet50, (224, 224, 3)),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", choices=CASES, default=["LeNet-5", "ResNet-20"])
  parser.add_argument("--reps", type=int, default=50, help="timed steps of each model (0: compile time only)")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--compile-reps", type=int, default=3, help="compiles of each step, alternating (median)")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_train.json"))
  apply_host_memory = host_memory_option(parser)
  args = parser.parse_args()
  if args.compile_reps < 1 or args.reps < 0:
    parser.error("--compile-reps must be at least 1 and --reps at least 0")
  reuse_host_memory = apply_host_memory(args)
  cases = {f"{name} {'x'.join(map(str, CASES[name][1]))}": (CASES[name][0](), CASES[name][1]) for name in args.models}
  print(f"training step (forward, backward, Adam), batch {args.batch}, median of {args.reps} interleaved steps\n")
  print(
    "| model | native img/s | funconv img/s | speed-up | native compile s | funconv compile s | "
    "native MiB | funconv MiB |\n|---|---|---|---|---|---|---|---|"
  )
  results = []
  for name, (model, shape) in cases.items():
    runs, compiles = {}, {"native": [], "funconv": []}
    for _ in range(args.compile_reps):  # alternately: compile time drifts with the machine's load
      for kind, seconds in compiles.items():
        runs[kind] = compiled_step(model, shape, args.batch, kind == "native")
        seconds.append(runs[kind][4])
    compile_s = {kind: statistics.median(seconds) for kind, seconds in compiles.items()}
    states = {kind: run[1] for kind, run in runs.items()}
    times = {kind: [] for kind in runs}
    for rep in range(args.reps + 3 if args.reps else 0):
      for kind, (compiled, _, x, y, _, _) in runs.items():
        start = time.perf_counter()
        states[kind], metrics = compiled(states[kind], x, y)
        jax.block_until_ready(metrics)
        if rep >= 3:
          times[kind].append(time.perf_counter() - start)
    ips = {kind: args.batch / statistics.median(ts) for kind, ts in times.items()} if args.reps else None
    result = dict(
      model=name,
      batch=args.batch,
      images_per_s=ips,
      speedup=ips["funconv"] / ips["native"] if ips else None,
      compile_s=compile_s,
      compile_ratio=compile_s["funconv"] / compile_s["native"],
      memory_mib={k: r[5] for k, r in runs.items()},
    )
    results.append(result)
    speed = f"{ips['native']:.0f} | {ips['funconv']:.0f} | {result['speedup']:.2f}" if ips else "- | - | -"
    print(
      f"| {name} | {speed} | "
      f"{compile_s['native']:.1f} | {compile_s['funconv']:.1f} | {runs['native'][5]:.0f} | {runs['funconv'][5]:.0f} |",
      flush=True,
    )
  write_results(
    args.out,
    jax=jax.__version__,
    reuse_host_memory=reuse_host_memory,
    reps=args.reps,
    compile_reps=args.compile_reps,
    results=results,
  )


if __name__ == "__main__":
  main()
