"""funconv against XLA's native convolution and against PyTorch on the CPU, side by side in one process.

Layers: for rows 1-7 of bench_conv's table (float32; NHWC for JAX, channels_last for PyTorch),
the forward pass (PyTorch under `torch.no_grad`) and the forward+backward pass (gradients for
input and kernel of `sum(y ** 2)`) of `funconv.ops.conv`, `lax.conv_general_dilated` and
`torch.nn.functional.conv2d` (no bias), interleaved, as the median of `--reps` runs after
compilation and warm-up. Ratios are PyTorch time / funconv time: above 1, funconv is faster.
PyTorch pads "SAME" by `k // 2` on both sides; for the stride-2 row XLA pads (0, 1) instead of
(1, 1): the same output size and work, shifted by one pixel.

Training steps: LeNet-5 (28x28x1) and the CIFAR ResNet-20 (32x32x3), batch 128, Adam 1e-3,
softmax cross-entropy: images per second of funconv's step (`funconv.train.make_steps`), the same
step with native convolution (bench_train's `native_convolution`) and a PyTorch twin of the model
(channels_last, train mode, `torch.optim.Adam`), interleaved step by step. The twin starts from
funconv's initial weights; its parameter count and training-mode logits are checked against the
funconv model before timing.

PyTorch gets as many threads as JAX uses cores. Prints markdown tables and writes
experiments/results/bench_torch.json. Needs PyTorch (`pip install torch`; the CPU build will do).

    python experiments/bench_torch.py             # 7 layer rows, both models
    python experiments/bench_torch.py --quick     # rows 1, 4, 7 and fewer repetitions
"""

import argparse
import functools
import math
import os
import pathlib
import platform
import statistics
import sys

# PyTorch's OpenMP threads spin for a while after each parallel region; interleaved with JAX in one
# process they took JAX's cores (LeNet-5's funconv step 1.8x slower, PyTorch's unchanged). Set before
# OpenMP starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError:
  print("bench_torch.py needs PyTorch: pip install torch  (the CPU build is enough)", file=sys.stderr)
  sys.exit(2)

import jax
import jax.numpy as jnp
import numpy as np

import funconv as fc
from bench_conv import ROWS, host_memory_option, interleaved_medians, make_pair, train_step, write_results
from bench_train import compiled_step
from funconv import models
from profile_step import jax_step

LAYER_ROWS = (1, 2, 3, 4, 5, 6, 7)
QUICK_ROWS = (1, 4, 7)


@functools.cache
def torch_device():
  """Where PyTorch runs: where JAX does, on the GPU when JAX's default backend is one (asked on first use, after
  `main` has set the allocator: asking starts JAX's backend)."""
  return torch.device("cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu")


def synchronized(fn):
  """`fn` waiting for its GPU work, as `jax.block_until_ready` does for JAX's."""
  if torch_device().type != "cuda":
    return fn

  def run():
    result = fn()
    torch.cuda.synchronize()
    return result

  return run


def core_count():
  """The cores this process may run on: what XLA:CPU sizes its thread pool by (os.cpu_count() counts
  cores the affinity mask may exclude)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def set_torch_threads():
  """One PyTorch thread per core, as JAX uses."""
  torch.set_num_threads(core_count())
  return torch.get_num_threads()


def device_info():
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
  device = jax.devices()[0]
  # PyTorch's OpenMP kernels slow down many times over when another process wants the cores: a
  # load average near 0 before the run is part of a valid result.
  return dict(
    jax_device_kind=device.device_kind,
    jax_platform=device.platform,
    processor=platform.processor(),
    cpu_model=next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None),
    machine=platform.machine(),
    cpu_count=os.cpu_count(),
    jax_cores=core_count(),
    torch_threads=torch.get_num_threads(),
    torch_device=str(torch_device()),
    gpu=torch.cuda.get_device_name() if torch_device().type == "cuda" else None,
    xla_flags=os.environ.get("XLA_FLAGS"),
    load_average_before=os.getloadavg(),
  )


# PyTorch twins of funconv's models, layer for layer. Modules are registered in the order of
# funconv's parameter leaves, so `load_funconv_params` can copy one into the other.


def torch_batch_norm(channels):
  # funconv's momentum weighs the old running average (0.9); PyTorch's weighs the new batch (0.1).
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class CifarBlock(nn.Module):
  """`funconv.models.resnet.cifar_resnet`'s unit: conv-BN-ReLU-conv-BN plus the option-A shortcut
  (subsample, zero-pad the channels equally on both sides), then ReLU."""

  def __init__(self, in_width, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(in_width, width, 3, stride, padding=1, bias=False)
    self.bn1 = torch_batch_norm(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, padding=1, bias=False)
    self.bn2 = torch_batch_norm(width)
    self.stride, self.extra = stride, width - in_width

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    shortcut = x
    if self.stride != 1 or self.extra:
      shortcut = x[:, :, :: self.stride, :: self.stride]
      shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
      # F.pad returns a contiguous (NCHW) tensor; keep the whole network channels_last.
      shortcut = shortcut.contiguous(memory_format=torch.channels_last)
    return F.relu(y + shortcut)


def torch_resnet20(num_classes=10):
  """funconv.models.resnet20: 3x3 conv 16 (no bias), BN, ReLU; three stages of three blocks at 16,
  32, 64 channels (stride 2 into the second and third); global average pool; dense."""
  layers, width = [nn.Conv2d(3, 16, 3, padding=1, bias=False), torch_batch_norm(16), nn.ReLU()], 16
  for stage, stage_width in enumerate((16, 32, 64)):
    for i in range(3):
      layers.append(CifarBlock(width, stage_width, 2 if stage > 0 and i == 0 else 1))
      width = stage_width
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def torch_lenet5(input_size=28, num_classes=10):
  """funconv.models.lenet5 with its defaults (tanh, average pooling); C1 pads the input to 32x32."""
  pad = max((32 - input_size) // 2, 0)
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=pad),
    nn.Tanh(),
    nn.AvgPool2d(2, 2),
    nn.Conv2d(6, 16, 5),
    nn.Tanh(),
    nn.AvgPool2d(2, 2),
    nn.Conv2d(16, 120, 5),
    nn.Tanh(),
    nn.Flatten(),  # C5's output is 1x1: no NHWC/NCHW question
    nn.Linear(120, 84),
    nn.Tanh(),
    nn.Linear(84, num_classes),
  )


def load_funconv_params(torch_model, params):
  """Copy funconv's params (HWIO kernels, (in, out) dense weights, BatchNorm (beta, gamma)) into the twin."""
  targets = []
  for module in torch_model.modules():
    if isinstance(module, (nn.Conv2d, nn.Linear)):
      targets += [module.weight] + ([module.bias] if module.bias is not None else [])
    elif isinstance(module, nn.BatchNorm2d):
      targets += [module.bias, module.weight]
  leaves = jax.tree.leaves(params)
  assert len(leaves) == len(targets), f"{len(leaves)} funconv parameter arrays, {len(targets)} in the PyTorch twin"
  with torch.no_grad():
    for leaf, target in zip(leaves, targets):
      value = np.array(leaf)  # a copy: torch wants writable memory
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T if value.ndim == 2 else value
      assert value.shape == tuple(target.shape), f"funconv {leaf.shape} against PyTorch {tuple(target.shape)}"
      target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def to_torch_images(x):
  """NHWC JAX array -> NCHW PyTorch tensor in channels_last memory format (the same bytes)."""
  return (
    torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(torch_device())
  )


def to_torch_labels(y):
  """Integer class labels as a PyTorch int64 tensor."""
  return torch.from_numpy(np.array(y)).long().to(torch_device())


def torch_twin(name, model, shape, params, state):
  """The PyTorch twin of `model` with funconv's `params`, checked: same parameter count, and the same
  training-mode logits (batch statistics) on a few random images."""
  twin = {"LeNet-5": lambda: torch_lenet5(shape[0]), "ResNet-20": torch_resnet20}[name]()
  twin = twin.to(torch_device(), memory_format=torch.channels_last).train()
  expected = fc.summary(model, shape, print_fn=None)["params"]
  count = sum(p.numel() for p in twin.parameters())
  assert count == expected, f"{name}: PyTorch twin has {count} parameters, funconv's model {expected}"
  load_funconv_params(twin, params)
  x = jax.random.normal(jax.random.key(1), (8, *shape), jnp.float32)
  logits, _ = fc.batched(model.apply)(params, state, x, train=True)
  with torch.no_grad():
    twin_logits = twin(to_torch_images(x)).cpu().numpy()
  for bn in (m for m in twin.modules() if isinstance(m, nn.BatchNorm2d)):
    bn.reset_running_stats()  # the check's batch is not training data
  error = float(np.max(np.abs(twin_logits - np.asarray(logits))) / (np.max(np.abs(np.asarray(logits))) + 1e-12))
  assert error < 1e-3, f"{name}: PyTorch twin's logits differ from funconv's by {error:.2e} (relative)"
  return twin, count, error


def torch_step(twin, optimizer, x, y):
  """One PyTorch training step; zero-argument, for `interleaved_medians`."""

  def run():
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(twin(x), y)
    loss.backward()
    optimizer.step()
    return loss

  return synchronized(run)


def torch_conv_functions(row, x, w):
  """(forward, forward+backward) zero-argument PyTorch functions for one row, on the same numbers as JAX's."""
  _, window, _, stride, padding, _, _, _ = row
  pad = {"SAME": window[0] // 2, "VALID": 0}[padding]
  xt = to_torch_images(x)
  wt = (
    torch.from_numpy(np.array(w).transpose(3, 2, 0, 1)).contiguous(memory_format=torch.channels_last).to(torch_device())
  )
  x_grad, w_param = xt.clone().requires_grad_(), nn.Parameter(wt.clone())

  def forward():
    with torch.no_grad():
      return F.conv2d(xt, wt, stride=stride, padding=pad)

  def forward_backward():
    x_grad.grad = w_param.grad = None
    (F.conv2d(x_grad, w_param, stride=stride, padding=pad) ** 2).sum().backward()
    return x_grad.grad, w_param.grad

  return synchronized(forward), synchronized(forward_backward)


def layer_passes(row):
  """For one row: zero-argument functions of funconv's, native's and PyTorch's forward pass, then of
  their forward+backward passes (as `train_step`), on the same numbers; and the row's forward FLOPs."""
  ours, native, x, w, flops = make_pair(row)
  torch_forward, torch_forward_backward = torch_conv_functions(row, x, w)
  jit_ours, jit_native, grad_ours, grad_native = jax.jit(ours), jax.jit(native), train_step(ours), train_step(native)
  forward = [lambda: jit_ours(x, w), lambda: jit_native(x, w), torch_forward]
  return forward + [lambda: grad_ours(x, w), lambda: grad_native(x, w), torch_forward_backward], flops


def geomean(values):
  return math.exp(statistics.fmean(math.log(v) for v in values))


def bench_layers(rows, reps):
  print(
    "| # | input | kernel | fwd funconv ms | fwd native ms | fwd PyTorch ms | fwd PyTorch/funconv | "
    "fwd PyTorch/native | fwd+bwd funconv ms | fwd+bwd native ms | fwd+bwd PyTorch ms | "
    "fwd+bwd PyTorch/funconv | fwd+bwd PyTorch/native |"
  )
  print("|" + "---|" * 13)
  results = []
  for number in rows:
    row = ROWS[number]
    passes, _ = layer_passes(row)
    fwd, bwd = interleaved_medians(passes[:3], (), reps), interleaved_medians(passes[3:], (), reps)
    result = dict(
      row=number,
      input=row[0],
      window=row[1],
      c_out=row[2],
      stride=row[3],
      padding=row[4],
      **{f"fwd_{kind}_ms": t * 1e3 for kind, t in zip(("funconv", "native", "torch"), fwd)},
      **{f"fwdbwd_{kind}_ms": t * 1e3 for kind, t in zip(("funconv", "native", "torch"), bwd)},
      fwd_torch_over_funconv=fwd[2] / fwd[0],
      fwd_torch_over_native=fwd[2] / fwd[1],
      fwdbwd_torch_over_funconv=bwd[2] / bwd[0],
      fwdbwd_torch_over_native=bwd[2] / bwd[1],
    )
    results.append(result)
    print(
      f"| {number} | {'x'.join(map(str, row[0]))} | {'x'.join(map(str, row[1]))}->{row[2]} s{row[3]} {row[4]} "
      f"| {fwd[0] * 1e3:.2f} | {fwd[1] * 1e3:.2f} | {fwd[2] * 1e3:.2f} | {fwd[2] / fwd[0]:.2f} "
      f"| {fwd[2] / fwd[1]:.2f} | {bwd[0] * 1e3:.2f} | {bwd[1] * 1e3:.2f} | {bwd[2] * 1e3:.2f} "
      f"| {bwd[2] / bwd[0]:.2f} | {bwd[2] / bwd[1]:.2f} |",
      flush=True,
    )
  return results


def bench_steps(batch, reps):
  cases = {"LeNet-5": (models.lenet5(), (28, 28, 1)), "ResNet-20": (models.resnet20(), (32, 32, 3))}
  print(
    "| model | params | funconv img/s | native img/s | PyTorch img/s | funconv/PyTorch | native/PyTorch | "
    "funconv compile s | native compile s |\n|---|---|---|---|---|---|---|---|---|"
  )
  results = []
  for name, (model, shape) in cases.items():
    runs = {kind: compiled_step(model, shape, batch, kind == "native") for kind in ("funconv", "native")}
    _, ts, x, y, _, _ = runs["funconv"]
    twin, params, error = torch_twin(name, model, shape, ts.params, ts.state)  # before the state is donated
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    steps = [jax_step(*runs[kind][:4]) for kind in ("funconv", "native")]
    steps.append(torch_step(twin, optimizer, to_torch_images(x), to_torch_labels(y)))
    times = interleaved_medians(steps, (), reps)
    ips = dict(zip(("funconv", "native", "torch"), (batch / t for t in times)))
    result = dict(
      model=name,
      input=shape,
      batch=batch,
      params=params,
      twin_logits_relative_error=error,
      images_per_s=ips,
      funconv_over_torch=ips["funconv"] / ips["torch"],
      native_over_torch=ips["native"] / ips["torch"],
      compile_s={kind: runs[kind][4] for kind in ("funconv", "native")},
    )
    results.append(result)
    print(
      f"| {name} {'x'.join(map(str, shape))} | {params:,} | {ips['funconv']:.0f} | {ips['native']:.0f} "
      f"| {ips['torch']:.0f} | {result['funconv_over_torch']:.2f} | {result['native_over_torch']:.2f} "
      f"| {runs['funconv'][4]:.1f} | {runs['native'][4]:.1f} |",
      flush=True,
    )
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help=f"rows {QUICK_ROWS} only, fewer repetitions")
  parser.add_argument("--rows", type=int, nargs="*", choices=LAYER_ROWS, help="layer rows to run (default: all)")
  parser.add_argument("--reps", type=int, default=None, help="timed runs per layer function (default 15, quick 5)")
  parser.add_argument("--step-reps", type=int, default=None, help="timed training steps (default 30, quick 10)")
  parser.add_argument("--batch", type=int, default=128, help="training-step batch")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_torch.json"))
  apply_host_memory = host_memory_option(parser)
  args = parser.parse_args()
  reuse_host_memory = apply_host_memory(args)
  rows = args.rows or (QUICK_ROWS if args.quick else LAYER_ROWS)
  reps = args.reps or (5 if args.quick else 15)
  step_reps = args.step_reps or (10 if args.quick else 30)
  set_torch_threads()
  device = device_info()
  print(
    f"jax {jax.__version__} ({device['jax_platform']}, {device['jax_device_kind']}, XLA:CPU over "
    f"{device['jax_cores']} cores); torch {torch.__version__} ({device['torch_threads']} threads); "
    f"{device['cpu_model'] or device['processor'] or device['machine']}, os.cpu_count() {device['cpu_count']}, "
    f"load average {device['load_average_before'][0]:.2f}; "
    f"medians of {reps} (layers) and {step_reps} (steps) interleaved runs\n"
  )
  layers = bench_layers(rows, reps)
  print()
  steps = bench_steps(args.batch, step_reps)
  by_model = {r["model"]: r for r in steps}
  summary = dict(
    geomean_fwdbwd_torch_over_funconv=geomean(r["fwdbwd_torch_over_funconv"] for r in layers),
    geomean_fwd_torch_over_funconv=geomean(r["fwd_torch_over_funconv"] for r in layers),
    geomean_fwdbwd_torch_over_native=geomean(r["fwdbwd_torch_over_native"] for r in layers),
    geomean_fwd_torch_over_native=geomean(r["fwd_torch_over_native"] for r in layers),
    resnet20_funconv_over_torch=by_model["ResNet-20"]["funconv_over_torch"],
    lenet5_funconv_over_torch=by_model["LeNet-5"]["funconv_over_torch"],
  )
  print(
    f"\nlayers, PyTorch time / funconv time (geometric mean over rows {list(rows)}): fwd+bwd "
    f"{summary['geomean_fwdbwd_torch_over_funconv']:.2f}, forward {summary['geomean_fwd_torch_over_funconv']:.2f} "
    f"(PyTorch / native: {summary['geomean_fwdbwd_torch_over_native']:.2f}, "
    f"{summary['geomean_fwd_torch_over_native']:.2f}); training step img/s funconv / PyTorch: ResNet-20 "
    f"{summary['resnet20_funconv_over_torch']:.2f}, LeNet-5 {summary['lenet5_funconv_over_torch']:.2f}"
  )
  device["load_average_after"] = os.getloadavg()
  write_results(
    args.out,
    jax=jax.__version__,
    reuse_host_memory=reuse_host_memory,
    torch=torch.__version__,
    device=device,
    reps=reps,
    step_reps=step_reps,
    layers=layers,
    steps=steps,
    summary=summary,
  )


if __name__ == "__main__":
  main()
