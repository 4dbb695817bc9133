"""Data-parallel scaling: a training step of ResNet-20 and ResNet-50 on 1, 2, 4 and 8 devices.

For each model and device count: the whole training step of `funconv.train.make_steps(...,
mesh=data_mesh(n))` (forward, backward, Adam; the global batch split over the devices, the train
state replicated), its median time over interleaved steps after compile and warm-up, images/s,
compile time, and the bytes all-reduced per step, read from the compiled program (the result
shapes of its all-reduce instructions: the gradients, BatchNorm's statistics and the metrics).
From the bytes, the time a ring all-reduce would take at `--bandwidth` GB/s per device
(`2 (n - 1) / n * bytes / bandwidth`) against the step's compute on one device of n.

On a CPU the devices are simulated (`--xla_force_host_platform_device_count`, set here before JAX
starts): they share the machine's cores, so the step cannot get faster with more of them; the
bytes are those real devices would exchange. On GPUs, the devices JAX sees are used.

    python experiments/bench_scale.py [--devices 1 2 4 8] [--models ResNet-20 ResNet-50] [--batch 64] [--reps 10]
"""

import argparse
import math
import os
import pathlib
import re
import statistics
import time

DEVICES = (1, 2, 4, 8)


def parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", type=int, nargs="+", default=list(DEVICES))
  parser.add_argument("--models", nargs="+", default=["ResNet-20", "ResNet-50"], choices=["ResNet-20", "ResNet-50"])
  parser.add_argument("--batch", type=int, default=64, help="the global batch (a multiple of every device count)")
  parser.add_argument("--resnet50-size", type=int, default=224, help="ResNet-50's image side (default 224)")
  parser.add_argument("--reps", type=int, default=10, help="timed steps of each configuration, interleaved")
  parser.add_argument("--bandwidth", type=float, default=100.0, help="GB/s per device for the all-reduce estimate")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_scale.json"))
  args = parser.parse_args()
  if any(args.batch % n for n in args.devices):
    parser.error(f"--batch {args.batch} must divide over every device count {args.devices}")
  return args


def all_reduced_bytes(hlo_text):
  """The bytes of the results of every all-reduce in a compiled program's text (async starts counted once)."""
  sizes = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}
  total = 0
  for line in hlo_text.splitlines():
    match = re.search(r"=\s*(.*?)\s+all-reduce(-start)?\(", line)
    if match:
      for dtype, dims in re.findall(r"\b(pred|[suf]\d+|bf16)\[([\d,]*)\]", match.group(1)):
        total += sizes[dtype] * math.prod(int(d) for d in dims.split(",") if d)
  return total


def main():
  args = parse()
  if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={max(args.devices)}"
    )
  import jax
  import numpy as np
  import optax

  from bench_conv import write_results
  from funconv import models, train
  from funconv.train import distributed

  platform = jax.devices()[0].platform
  shapes = {
    "ResNet-20": (models.resnet20, (32, 32, 3)),
    "ResNet-50": (models.resnet50, (args.resnet50_size,) * 2 + (3,)),
  }
  device_counts = [n for n in args.devices if n <= jax.device_count()]
  print(
    f"training step (forward, backward, Adam), global batch {args.batch}, {platform} "
    f"({jax.devices()[0].device_kind}), median of {args.reps} interleaved steps; all-reduce at {args.bandwidth} GB/s\n"
  )
  print(
    "| model | devices | step ms | img/s | vs 1 device | compile s | all-reduced MiB/step | "
    "all-reduce ms at bandwidth | compute ms per device |\n|---|---|---|---|---|---|---|---|---|"
  )
  results = []
  for name in args.models:
    builder, shape = shapes[name]
    model, optimizer = builder(), optax.adam(1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *shape)).astype(np.float32)
    y = (np.arange(args.batch) % 10).astype(np.int32)
    runs = {}
    for n in device_counts:
      mesh = distributed.data_mesh(n)
      step, _ = train.make_steps(model, optimizer, mesh=mesh)
      ts = distributed.replicate(mesh, train.init_train_state(model, optimizer, shape))
      batch = distributed.place_batch(mesh, args.batch, x, y)
      start = time.perf_counter()
      compiled = step.lower(ts, *batch).compile()
      runs[n] = dict(
        compiled=compiled,
        state=ts,
        batch=batch,
        compile_s=time.perf_counter() - start,
        bytes=all_reduced_bytes(compiled.as_text()),
        times=[],
      )
    for rep in range(args.reps + 2):
      for run in runs.values():
        start = time.perf_counter()
        run["state"], metrics = run["compiled"](run["state"], *run["batch"])
        jax.block_until_ready(metrics)
        if rep >= 2:
          run["times"].append(time.perf_counter() - start)
    one = statistics.median(runs[min(runs)]["times"])
    for n, run in runs.items():
      seconds = statistics.median(run["times"])
      ring_ms = 2 * (n - 1) / n * run["bytes"] / (args.bandwidth * 1e9) * 1e3
      result = dict(
        model=name,
        input_shape=list(shape),
        devices=n,
        global_batch=args.batch,
        step_ms=seconds * 1e3,
        images_per_s=args.batch / seconds,
        speedup_vs_fewest_devices=one / seconds,
        compile_s=run["compile_s"],
        all_reduced_bytes=run["bytes"],
        all_reduce_ms_at_bandwidth=ring_ms,
        compute_ms_per_device_if_linear=one * 1e3 / n,
      )
      results.append(result)
      print(
        f"| {name} {'x'.join(map(str, shape))} | {n} | {seconds * 1e3:.1f} | {args.batch / seconds:.0f} | "
        f"{one / seconds:.2f} | {run['compile_s']:.1f} | {run['bytes'] / 2**20:.2f} | {ring_ms:.2f} | "
        f"{one * 1e3 / n:.1f} |",
        flush=True,
      )
  write_results(
    args.out,
    jax=jax.__version__,
    platform=platform,
    device_kind=jax.devices()[0].device_kind,
    simulated_devices=platform == "cpu",
    cpu_count=os.cpu_count(),
    bandwidth_gb_s=args.bandwidth,
    reps=args.reps,
    results=results,
  )


if __name__ == "__main__":
  main()
