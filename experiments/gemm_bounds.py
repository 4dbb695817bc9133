"""How fast funconv's convolution could be with its GEMMs alone, against PyTorch's: by layer and in a step.

For bench_torch's layers (rows of bench_conv's table), times each pass of the convolution
(forward, input gradient, kernel gradient) as the GEMMs alone that the algorithms funconv's plan
picks for these rows reduce it to: no gather, pad, transform, slide-add or scatter around them.
Each GEMM runs over the batch in chunks as funconv's chunk loops do, its operands and products in
cache (windows of one array about a chunk long, one per chunk), at the fastest chunk of 1, 2, 4, ...
examples (searched one configuration at a time; the fastest is timed again interleaved with the
whole passes, and the bound is the faster of the two readings).

- direct: the faster of the GEMMs without a transform: the patch matrix `(N * out, K * C)` by the
  kernel `(K * C, C_out)` (im2col); at stride 1 in 2-D, "hybrid"'s GEMM of the leading axes'
  patches by every tap of the last axis (wider; 4-25% more FLOPs, the last axis's padding); for
  the input gradient the same of the cotangent (at stride 2 not an algorithm funconv runs, but of
  col2im's FLOPs), or the cotangent by the kernel's transpose (col2im's GEMM); for the kernel
  gradient the patches contracted with the cotangent over the positions.
- Winograd F(4, 3) (3-tap windows at stride 1): each pass's `a^d` GEMMs over the transformed
  tiles (`(36, tiles, C)` by `(36, C, C_out)` in 2-D), 4x fewer FLOPs in shorter GEMMs.

A pass's bound is the faster of the two: a lower bound of the pass under each of these
algorithms (im2col, hybrid, col2im, Winograd; not "shifted" and "products", which the plan does
not pick for these rows, nor algorithms funconv does not have). Where PyTorch's time is under
it, none of them, however the rest of its work is arranged, reaches PyTorch on this machine.
Rows 1-6 by default (row 7's single-channel layer multiplies tap by tap without a GEMM and is
already ahead of PyTorch). Also times the whole passes of funconv, native and PyTorch as
bench_torch does (PyTorch's forward under `no_grad`; forward+backward of `sum(y ** 2)`).
Then ResNet-20's training step at batch 128 (`step_bound`): every convolution pass the step runs at
its bound, summed, against PyTorch's whole step, interleaved with funconv's. Interleaved medians;
prints tables and writes experiments/results/gemm_bounds.json. Needs PyTorch (`pip install torch`).

    python experiments/gemm_bounds.py                       # rows 1-6 and the step, ~8 min on 2 cores
    python experiments/gemm_bounds.py --rows 2 3 --no-step  # some rows
    python experiments/gemm_bounds.py --rows                # the step alone
"""

import argparse
import collections
import math
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from bench_conv import ROWS, gemm_peak, host_memory_option, interleaved_medians, make_pair, write_results
from bench_torch import (
  LAYER_ROWS,
  device_info,
  layer_passes,
  set_torch_threads,
  to_torch_images,
  to_torch_labels,
  torch,
  torch_step,
  torch_twin,
)
from bench_train import compiled_step
from funconv import models
from funconv.ops import winograd
from profile_step import (
  SHAPE,
  batch_norm_counts,
  batch_norm_fwd_bwd,
  classify,
  convolution_equations,
  jax_step,
  layer_label,
  step_jaxpr,
)

TILE = 4  # F(4, 3), the tile plan.winograd_tile picks in 1-D and 2-D float32
PASSES = ("forward", "input_grad", "kernel_grad")
DEFAULT_ROWS = (1, 2, 3, 4, 5, 6)


class Gemm(NamedTuple):
  """`points` GEMMs (batched) of `rows` per example: `(rows, depth) @ (depth, width)`, or with
  `contract_rows` the operands `(rows, depth)` and `(rows, width)` contracted over the rows."""

  points: int
  rows: int
  depth: int
  width: int
  contract_rows: bool = False


def _normal(key, shape):
  return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def chunked(gemm: Gemm, n, chunk):
  """A jitted function running `gemm` for `n` examples `chunk` at a time, as funconv's chunk loops do
  (the products summed over the chunks), with its operands and products in cache: each chunk's
  operands are a window of one array a few rows longer than a chunk's, starting one row further on
  (so that XLA cannot hoist the GEMM out of the loop), as funconv writes a chunk's patches or tiles
  just before its GEMM reads them. Returns the function and its arguments."""
  lead = (gemm.points,) if gemm.points > 1 else ()
  batch, r = (((0,), (0,)) if lead else ((), ())), len(lead)
  rows, chunks = chunk * gemm.rows, n // chunk
  a = _normal(1, (*lead, rows + chunks, gemm.depth))
  b = _normal(2, (*lead, rows + chunks, gemm.width) if gemm.contract_rows else (*lead, gemm.depth, gemm.width))
  contract = ((r,), (r,)) if gemm.contract_rows else ((r + 1,), (r,))
  window = lambda x, i: lax.dynamic_slice_in_dim(x, i, rows, r)

  def product(a, b, i):
    return lax.dot_general(window(a, i), window(b, i) if gemm.contract_rows else b, (contract, batch))

  out = jax.eval_shape(product, a, b, 0)

  def run(a, b):
    def step(total, i):  # every chunk's products summed, so that none is dead code
      return total + product(a, b, i), None

    return lax.scan(step, jnp.zeros(out.shape, out.dtype), jnp.arange(chunks))[0]

  return jax.jit(run), (a, b)


def direct_gemms(out, window, channels, c_out, stride):
  """Per pass, the GEMMs that compute the convolution without a transform (per example)."""
  positions, taps = math.prod(out), math.prod(window)
  gemms = dict(
    forward=[Gemm(1, positions, taps * channels, c_out)],
    input_grad=[Gemm(1, positions, taps * c_out, channels), Gemm(1, positions, c_out, taps * channels)],
    kernel_grad=[Gemm(1, positions, taps * channels, c_out, True)],
  )
  if stride == 1 and len(window) >= 2:  # "hybrid": leading axes gathered, every tap of the last axis at once
    rows, lead, last = math.prod(out[:-1]) * (out[-1] + window[-1] - 1), math.prod(window[:-1]), window[-1]
    gemms["forward"].append(Gemm(1, rows, lead * channels, last * c_out))
    gemms["input_grad"].append(Gemm(1, rows, lead * c_out, last * channels))
    gemms["kernel_grad"].append(Gemm(1, rows, lead * channels, last * c_out, True))
  return gemms


def winograd_gemms(out, channels, c_out):
  """Per pass, F(4, 3)'s batched GEMM over the transformed tiles (per example)."""
  points, tiles = (TILE + winograd.TAPS - 1) ** len(out), math.prod(winograd.tiles(out, TILE))
  return dict(
    forward=Gemm(points, tiles, channels, c_out),
    input_grad=Gemm(points, tiles, c_out, channels),
    kernel_grad=Gemm(points, tiles, channels, c_out, True),
  )


def fastest_chunk(gemm, n, reps):
  """(milliseconds, chunk) of `gemm` at its fastest chunk of 1, 2, 4, ... examples, timed one after another."""
  timed = []
  for chunk in (c for c in (2**i for i in range(n.bit_length())) if n % c == 0):
    fn, args = chunked(gemm, n, chunk)
    timed.append((interleaved_medians([fn], args, reps)[0] * 1e3, chunk))
  return min(timed)


def pass_bounds(n, out, window, channels, c_out, stride, reps, dilation=1, groups=1, names=PASSES):
  """Per pass in `names` of the convolution of `n` examples to spatial output `out`: the fastest
  chunk's time of each family's GEMMs (`direct_ms`, `winograd_ms`), the faster one's `bound_gemm`,
  `bound_chunk` and `searched_ms`; and that GEMM's chunked function and arguments."""
  rank = len(window)
  families = dict(direct=direct_gemms(out, window, channels, c_out, stride))
  if winograd.applies(window, (stride,) * rank, (dilation,) * rank, groups):
    families["winograd"] = {name: [gemm] for name, gemm in winograd_gemms(out, channels, c_out).items()}
  passes, fastest = {}, {}
  for name in names:
    searched = {
      family: min(fastest_chunk(g, n, reps) + (g,) for g in gemms[name]) for family, gemms in families.items()
    }
    passes[name] = {f"{family}_ms": ms for family, (ms, _, _) in searched.items()}
    ms, chunk, gemm = min(searched.values())
    passes[name].update(bound_gemm=gemm._asdict(), bound_chunk=chunk, searched_ms=ms)
    fastest[name] = chunked(gemm, n, chunk)
  return passes, fastest


def bound_row(number, reps):
  row = ROWS[number]
  shape, window, c_out, stride, padding, groups, dilation, _ = row
  ours, _, x, w, _ = make_pair(row)
  out = jax.eval_shape(ours, x, w).shape[1:-1]
  passes, fastest = pass_bounds(shape[0], out, window, shape[-1], c_out, stride, reps, dilation, groups)
  # The whole passes and the fastest GEMMs, interleaved (times above are from the search, one at a time).
  whole, flops = layer_passes(row)
  times = interleaved_medians(whole + [lambda f=f, a=a: f(*a) for f, a in fastest.values()], (), reps)
  for name, seconds in zip(passes, times[len(whole) :]):
    # Interleaved, the GEMM's operands are no longer in cache (small rows read up to 2x slower): the bound
    # is the faster of the two readings, a lower bound of what the GEMM costs in a pass.
    passes[name].update(interleaved_ms=seconds * 1e3, bound_ms=min(seconds * 1e3, passes[name]["searched_ms"]))
  kinds = ("funconv", "native", "torch")
  result = dict(
    row=number,
    input=shape,
    window=window,
    c_out=c_out,
    stride=stride,
    padding=padding,
    forward_gflop=flops / 1e9,
    **{f"fwd_{kind}_ms": t * 1e3 for kind, t in zip(kinds, times[:3])},
    **{f"fwdbwd_{kind}_ms": t * 1e3 for kind, t in zip(kinds, times[3:6])},
    passes=passes,
    fwd_bound_ms=passes["forward"]["bound_ms"],
    fwdbwd_bound_ms=sum(p["bound_ms"] for p in passes.values()),
  )
  result["fwd_torch_over_bound"] = result["fwd_torch_ms"] / result["fwd_bound_ms"]
  result["fwdbwd_torch_over_bound"] = result["fwdbwd_torch_ms"] / result["fwdbwd_bound_ms"]
  return result


# The passes each kind of convolution equation in a training step's jaxpr runs.
PASSES_OF_ROLE = {
  "forward": ("forward",),
  "input grad": ("input_grad",),
  "kernel grad": ("kernel_grad",),
  "input+kernel grad (fused)": ("input_grad", "kernel_grad"),
}


def step_bound(batch, reps):
  """ResNet-20's training step (`funconv.train.make_steps`, Adam) at `batch`: every convolution pass
  it runs (its jaxpr's equations, as profile_step finds them: the first layer computes no input
  gradient) at its GEMMs' bound, summed, a lower bound of the time funconv's convolutions take in
  the step; against PyTorch's whole step and funconv's, interleaved. The difference to PyTorch's
  step is what a funconv step as fast would leave for everything else: the work around the GEMMs,
  BatchNorm, ReLU, the shortcuts, pooling, the dense layer, the loss and Adam. funconv's BatchNorm
  (forward and backward, each shape timed alone, times its layers) is reported beside it.

  Each part is timed as a call of its own: the time of calling a jitted function that adds 1 to a
  scalar is taken off each."""
  model = models.resnet20()
  compiled, ts, x, y, _, _ = compiled_step(model, SHAPE, batch, False)
  jaxpr = step_jaxpr(model, optax.adam(1e-3), ts, x, y, False)
  twin, _, _ = torch_twin("ResNet-20", model, SHAPE, ts.params, ts.state)  # before the state is donated
  counts = collections.defaultdict(collections.Counter)  # (layer, out) -> {pass: count}
  for eqn, times in convolution_equations(jaxpr.jaxpr):
    _, role, layer = classify(eqn)
    for name in PASSES_OF_ROLE[role]:
      counts[layer, eqn.params["spec"].out][name] += times
  layers, fastest = {}, {}
  for (layer, out), by_pass in counts.items():
    (n, *_, channels), w, strides = layer
    passes, fastest[layer, out] = pass_bounds(n, out, w[:-2], channels, w[-1], strides[0], reps, names=tuple(by_pass))
    layers[layer, out] = dict(
      layer=layer_label(layer), out=out, passes={k: p | dict(count=by_pass[k]) for k, p in passes.items()}
    )
  steps = [
    jax_step(compiled, ts, x, y),
    torch_step(twin, torch.optim.Adam(twin.parameters(), lr=1e-3), to_torch_images(x), to_torch_labels(y)),
  ]
  # As for the rows: the fastest GEMMs timed again, interleaved with the whole steps; the faster reading counts.
  gemms = [(key, name, f, a) for key, by_pass in fastest.items() for name, (f, a) in by_pass.items()]
  times = interleaved_medians(steps + [lambda f=f, a=a: f(*a) for _, _, f, a in gemms], (), reps)
  funconv_ms, torch_ms = (t * 1e3 for t in times[:2])
  for (key, name, _, _), seconds in zip(gemms, times[2:]):
    timed = layers[key]["passes"][name]
    timed.update(interleaved_ms=seconds * 1e3, bound_ms=min(seconds * 1e3, timed["searched_ms"]))
  (call_s,) = interleaved_medians([lambda f=jax.jit(lambda a: a + 1), a=jnp.zeros(()): f(a)], (), reps)
  less_call = lambda ms: max(ms - call_s * 1e3, 0.0)
  bound = sum(p["count"] * less_call(p["bound_ms"]) for entry in layers.values() for p in entry["passes"].values())
  bn_counts = batch_norm_counts(model, SHAPE)
  bn_times = interleaved_medians([batch_norm_fwd_bwd(s, batch) for s in bn_counts], (), reps)
  batch_norm = [dict(input=s, count=count, ms=less_call(t * 1e3)) for (s, count), t in zip(bn_counts.items(), bn_times)]
  return dict(
    model="ResNet-20",
    batch=batch,
    layers=list(layers.values()),
    call_ms=call_s * 1e3,
    convolutions_bound_ms=bound,
    step_ms=dict(funconv=funconv_ms, torch=torch_ms),
    torch_over_bound=torch_ms / bound,
    batch_norm=batch_norm,
    batch_norm_ms=sum(b["count"] * b["ms"] for b in batch_norm),
  )


def _cell(times, key):
  return f"{times[key]:.2f}" if key in times else "-"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--rows",
    type=int,
    nargs="*",
    choices=LAYER_ROWS,
    help=f"layer rows to run (default: {DEFAULT_ROWS}; none with an empty list)",
  )
  parser.add_argument("--reps", type=int, default=15, help="timed runs per function")
  parser.add_argument(
    "--step", action=argparse.BooleanOptionalAction, default=True, help="also bound ResNet-20's training step"
  )
  parser.add_argument("--batch", type=int, default=128, help="the training step's batch")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "gemm_bounds.json"))
  apply_host_memory = host_memory_option(parser)
  args = parser.parse_args()
  reuse_host_memory = apply_host_memory(args)
  set_torch_threads()
  device = device_info()
  peak = gemm_peak(args.reps)
  print(
    f"GEMM peak (2048^3 float32 matmul): {peak:.0f} GFLOP/s; jax {jax.__version__}; {device['jax_cores']} cores; "
    f"load average {device['load_average_before'][0]:.2f}; medians of {args.reps} interleaved runs\n"
  )
  rows = DEFAULT_ROWS if args.rows is None else args.rows
  if rows:
    print(
      "| # | layer | pass | direct GEMM ms | Winograd GEMMs ms | chunk | fastest, interleaved ms | bound ms |\n"
      "|---|---|---|---|---|---|---|---|"
    )
  results = []
  for number in rows:
    r = bound_row(number, args.reps)
    results.append(r)
    layer = f"{'x'.join(map(str, r['input']))} {'x'.join(map(str, r['window']))}->{r['c_out']} s{r['stride']}"
    for name, times in r["passes"].items():
      print(
        f"| {number} | {layer} | {name} | {times['direct_ms']:.2f} | {_cell(times, 'winograd_ms')} "
        f"| {times['bound_chunk']} | {times['interleaved_ms']:.2f} | {times['bound_ms']:.2f} |",
        flush=True,
      )
  if rows:
    print(
      "\n| # | fwd PyTorch ms (GFLOP/s) | fwd funconv ms | fwd native ms | fwd bound ms | fwd PyTorch/bound "
      "| fwd+bwd PyTorch ms | fwd+bwd funconv ms | fwd+bwd bound ms | fwd+bwd PyTorch/bound |\n"
      "|---|---|---|---|---|---|---|---|---|---|"
    )
  for r in results:
    print(
      f"| {r['row']} | {r['fwd_torch_ms']:.2f} ({r['forward_gflop'] / r['fwd_torch_ms'] * 1e3:.0f}) "
      f"| {r['fwd_funconv_ms']:.2f} | {r['fwd_native_ms']:.2f} | {r['fwd_bound_ms']:.2f} "
      f"| {r['fwd_torch_over_bound']:.2f} "
      f"| {r['fwdbwd_torch_ms']:.2f} | {r['fwdbwd_funconv_ms']:.2f} | {r['fwdbwd_bound_ms']:.2f} "
      f"| {r['fwdbwd_torch_over_bound']:.2f} |"
    )
  step = step_bound(args.batch, args.reps) if args.step else None
  if step:
    print(
      f"\nResNet-20 training step, batch {args.batch}: its convolution passes at their GEMMs' bound "
      f"{step['convolutions_bound_ms']:.1f} ms; whole step: PyTorch {step['step_ms']['torch']:.1f} ms "
      f"(PyTorch/bound {step['torch_over_bound']:.2f}), funconv {step['step_ms']['funconv']:.1f} ms; "
      f"funconv's BatchNorm timed alone {step['batch_norm_ms']:.1f} ms"
    )
  device["load_average_after"] = os.getloadavg()
  write_results(
    args.out,
    jax=jax.__version__,
    reuse_host_memory=reuse_host_memory,
    gemm_peak_gflops=peak,
    device=device,
    reps=args.reps,
    layers=results,
    step=step,
  )


if __name__ == "__main__":
  main()
