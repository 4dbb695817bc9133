"""Convolution speed: funconv.ops against lax's native convolution, side by side in one process.

For each row of `ROWS`, times the forward pass and the forward+backward pass
(gradients for input and kernel of `sum(y ** 2)`, so the cotangent is computed at run time) of
`funconv.ops.conv` (or `conv_transpose`) and of `lax.conv_general_dilated` (`lax.conv_transpose`),
interleaved, as the median of `--reps` runs after compilation and warm-up. Prints a markdown
table with times, the speed-up (native time / funconv time) and GFLOP/s against a GEMM peak
measured in the same run, and writes it to experiments/results/bench_conv.json. Freed memory stays
with the process for the next call (`funconv.reuse_host_memory`) unless `--fresh-memory` is given.

    python experiments/bench_conv.py            # all 15 rows
    python experiments/bench_conv.py --quick    # a subset, under a minute
"""

import argparse
import json
import math
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

import funconv as fc

# (input shape, window, C_out, stride, padding, groups, dilation, transpose)
ROWS = {
  1: ((128, 32, 32, 3), (3, 3), 16, 1, "SAME", 1, 1, False),
  2: ((128, 32, 32, 16), (3, 3), 16, 1, "SAME", 1, 1, False),
  3: ((128, 16, 16, 32), (3, 3), 32, 1, "SAME", 1, 1, False),
  4: ((128, 8, 8, 64), (3, 3), 64, 1, "SAME", 1, 1, False),
  5: ((64, 56, 56, 64), (3, 3), 64, 1, "SAME", 1, 1, False),
  6: ((64, 28, 28, 128), (3, 3), 128, 2, "SAME", 1, 1, False),
  7: ((128, 28, 28, 1), (5, 5), 6, 1, "VALID", 1, 1, False),
  8: ((64, 56, 56, 64), (1, 1), 256, 1, "VALID", 1, 1, False),
  9: ((128, 32, 32, 32), (3, 3), 32, 1, "SAME", 32, 1, False),
  10: ((64, 32, 32, 32), (3, 3), 32, 1, "SAME", 1, 2, False),
  11: ((64, 1024, 32), (7,), 64, 1, "SAME", 1, 1, False),
  12: ((8, 16, 32, 32, 16), (3, 3, 3), 32, 1, "SAME", 1, 1, False),
  13: ((64, 256, 64), (4,), 32, 2, "SAME", 1, 1, True),
  14: ((32, 16, 16, 64), (4, 4), 32, 2, "SAME", 1, 1, True),
  15: ((4, 8, 16, 16, 32), (3, 3, 3), 16, 2, "SAME", 1, 1, True),
}
QUICK_ROWS = (1, 3, 7, 9, 11, 13)
LAYOUTS = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def make_pair(row):
  """(funconv function, native function, x, w, forward flops) for one table row."""
  shape, window, c_out, stride, padding, groups, dilation, transpose = row
  rank = len(window)
  strides, dil = (stride,) * rank, (dilation,) * rank
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape, jnp.float32)
  w = jax.random.normal(kw, (*window, shape[-1] // groups, c_out), jnp.float32) / math.sqrt(
    math.prod(window) * shape[-1] // groups
  )
  dn = LAYOUTS[rank]
  if transpose:
    ours = lambda x, w: fc.ops.conv_transpose(x, w, strides, padding, dil)
    native = lambda x, w: lax.conv_transpose(x, w, strides, padding, dil, dn)
    flops = 2 * shape[0] * math.prod(shape[1:-1]) * math.prod(window) * shape[-1] * c_out
  else:
    ours = lambda x, w: fc.ops.conv(x, w, strides, padding, dil, groups)
    native = lambda x, w: lax.conv_general_dilated(
      x, w, strides, padding, rhs_dilation=dil, dimension_numbers=dn, feature_group_count=groups
    )
    out = jax.eval_shape(ours, x, w).shape
    flops = 2 * math.prod(out) * math.prod(window) * (shape[-1] // groups)
  return ours, native, x, w, flops


def train_step(f):
  """Gradients for input and kernel of a loss whose cotangent XLA cannot fold away."""
  return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))


def host_memory_option(parser):
  """`--fresh-memory`, and a function of the parsed arguments that applies it: unless given, the allocator keeps
  freed memory for the next compiled call (`funconv.reuse_host_memory`, before JAX starts); returns whether it does."""
  parser.add_argument(
    "--fresh-memory",
    action="store_true",
    help="leave the allocator as it is: each compiled call maps its scratch buffer afresh (default: reuse it)",
  )
  return lambda args: False if args.fresh_memory else fc.reuse_host_memory()


def interleaved_medians(fns, args, reps):
  """Median seconds of each function, timed alternately after compile and two warm-up calls."""
  for f in fns:
    for _ in range(3):
      jax.block_until_ready(f(*args))
  times = [[] for _ in fns]
  for _ in range(reps):
    for f, ts in zip(fns, times):
      start = time.perf_counter()
      jax.block_until_ready(f(*args))
      ts.append(time.perf_counter() - start)
  return [statistics.median(ts) for ts in times]


def write_results(path, **fields):
  """`fields` as indented JSON at `path` (its folder made if need be); says where on stdout."""
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(fields, indent=2))
  print(f"\nwrote {out}")


def gemm_peak(reps):
  """GFLOP/s of a 2048 x 2048 float32 matmul in this process: the roofline for the table."""
  a = jax.random.normal(jax.random.key(1), (2048, 2048), jnp.float32)
  (t,) = interleaved_medians([jax.jit(jnp.matmul)], (a, a), reps)
  return 2 * 2048**3 / t / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help=f"rows {QUICK_ROWS} only, fewer repetitions")
  parser.add_argument("--rows", type=int, nargs="*", help="row numbers to run (default: all)")
  parser.add_argument("--reps", type=int, default=None, help="timed runs per function (default 15, quick 10)")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_conv.json"))
  apply_host_memory = host_memory_option(parser)
  args = parser.parse_args()
  reuse_host_memory = apply_host_memory(args)
  rows = args.rows or (QUICK_ROWS if args.quick else tuple(ROWS))
  reps = args.reps or (10 if args.quick else 15)
  peak = gemm_peak(reps)
  print(
    f"GEMM peak (2048^3 float32 matmul): {peak:.0f} GFLOP/s; jax {jax.__version__}; "
    f"{jax.devices()[0].platform}; median of {reps} interleaved runs\n"
  )
  header = (
    "| # | op | input | kernel | fwd native ms | fwd funconv ms | fwd speed-up | fwd+bwd native ms | "
    "fwd+bwd funconv ms | fwd+bwd speed-up | funconv fwd+bwd GFLOP/s | % of GEMM peak |"
  )
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  results = []
  for number in rows:
    row = ROWS[number]
    ours, native, x, w, flops = make_pair(row)
    fwd_ours, fwd_native = interleaved_medians([jax.jit(ours), jax.jit(native)], (x, w), reps)
    bwd_ours, bwd_native = interleaved_medians([train_step(ours), train_step(native)], (x, w), reps)
    gflops = 3 * flops / bwd_ours / 1e9
    result = dict(
      row=number,
      op="conv_transpose" if row[7] else "conv",
      input=row[0],
      window=row[1],
      c_out=row[2],
      stride=row[3],
      padding=row[4],
      groups=row[5],
      dilation=row[6],
      fwd_native_ms=fwd_native * 1e3,
      fwd_funconv_ms=fwd_ours * 1e3,
      fwd_speedup=fwd_native / fwd_ours,
      fwdbwd_native_ms=bwd_native * 1e3,
      fwdbwd_funconv_ms=bwd_ours * 1e3,
      fwdbwd_speedup=bwd_native / bwd_ours,
      fwdbwd_gflops=gflops,
      fraction_of_peak=gflops / peak,
    )
    results.append(result)
    print(
      f"| {number} | {result['op']} | {'x'.join(map(str, row[0]))} | {'x'.join(map(str, row[1]))}->{row[2]} "
      f"| {fwd_native * 1e3:.2f} | {fwd_ours * 1e3:.2f} | {result['fwd_speedup']:.2f} "
      f"| {bwd_native * 1e3:.2f} | {bwd_ours * 1e3:.2f} | {result['fwdbwd_speedup']:.2f} "
      f"| {gflops:.1f} | {100 * gflops / peak:.0f}% |",
      flush=True,
    )
  summary = dict(
    median_fwdbwd_speedup=statistics.median(r["fwdbwd_speedup"] for r in results),
    min_fwdbwd_speedup=min(r["fwdbwd_speedup"] for r in results),
    median_fwd_speedup=statistics.median(r["fwd_speedup"] for r in results),
    min_fwd_speedup=min(r["fwd_speedup"] for r in results),
  )
  print(
    f"\nfwd+bwd speed-up: median {summary['median_fwdbwd_speedup']:.2f}, min "
    f"{summary['min_fwdbwd_speedup']:.2f}; forward: median {summary['median_fwd_speedup']:.2f}, "
    f"min {summary['min_fwd_speedup']:.2f}"
  )
  write_results(
    args.out,
    jax=jax.__version__,
    machine=platform.machine(),
    reuse_host_memory=reuse_host_memory,
    gemm_peak_gflops=peak,
    reps=reps,
    rows=results,
    summary=summary,
  )


if __name__ == "__main__":
  main()
