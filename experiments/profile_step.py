"""Where a ResNet-20 training step's time goes: convolutions by layer, BatchNorm, Adam, and the rest.

The step is funconv's (`funconv.train.make_steps`: forward, backward, Adam 1e-3; CIFAR ResNet-20,
32x32x3, batch 128), with funconv's convolution and, side by side, with the identical model on
native convolution (bench_train's `native_convolution`). The parts:

- convolutions: every convolution equation of the step's jaxpr (sub-jaxprs included; a scan body
  counts `length` times), found by primitive: funconv's (`funconv.ops.primitives`: forward, input
  gradient, kernel gradient, and the fused pair of gradients `jax.grad` emits where both operands
  need one) or lax's `conv_general_dilated` (forward; its transposes, recognised by their swapped
  dimension numbers, are the input and kernel gradients). Identical equations are timed once, alone,
  jitted on random operands (`eqn.primitive.bind(*operands, **eqn.params)`), and counted; rows are
  the forward and the backward (both gradients) of each layer shape;
- BatchNorm: forward and backward (training mode, gradients for input and params, the running
  averages updated) at each shape the model uses, once per BatchNorm layer;
- Adam: `optax.adam(1e-3)` update and `optax.apply_updates` on the model's params, jitted;
- everything else (elementwise, ReLU, pooling, loss, fusion boundaries): the whole step's median
  less the sum of the parts. Parts timed alone lose the fusions XLA makes across them in the whole
  step, so the remainder can come out small or even negative;
- page faults: minor faults per step, the pages a step touches for the first time (without
  `funconv.reuse_host_memory`, which the script sets unless `--fresh-memory`, XLA:CPU's scratch
  buffer is mapped afresh by every step and all of it faults in).

BatchNorm and Adam are the same code in both models: timed once, shown in both columns. If PyTorch
imports, its twin of the model (bench_torch's, channels_last, funconv's initial weights) is profiled
with `torch.profiler`: inclusive CPU time of `aten::conv2d` and `aten::convolution_backward` per layer
shape, `aten::batch_norm` + `aten::native_batch_norm_backward` per shape, and `Adam.step`; its whole
step is timed without the profiler, interleaved with the JAX steps. Prints a markdown table and
writes experiments/results/profile_step.json.

    python experiments/profile_step.py [--reps 20] [--batch 128]
"""

import argparse
import collections
import contextlib
import os
import pathlib
import resource

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.extend import core

import funconv as fc
from bench_conv import host_memory_option, interleaved_medians, write_results
from bench_train import compiled_step, native_convolution
from funconv import models, train
from funconv.ops import primitives
from tests.oracle import LAYOUTS

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_torch.py: PyTorch's idle threads must not spin
try:
  import torch
except ImportError:
  torch = None

SHAPE = (32, 32, 3)
FUNCONV_CONVOLUTIONS = {p for p in vars(primitives).values() if isinstance(p, core.Primitive)}
# Where each funconv primitive keeps the layer's input x and kernel w: ("in" | "out", index).
FUNCONV_OPERANDS = {
  primitives.conv_p: ("forward", ("in", 0), ("in", 1)),
  primitives.conv_input_grad_p: ("input grad", ("out", 0), ("in", 1)),
  primitives.conv_kernel_grad_p: ("kernel grad", ("in", 0), ("out", 0)),
  primitives.conv_cotangents_p: ("input+kernel grad (fused)", ("in", 0), ("in", 1)),
}
NATIVE_FORWARD = lax.conv_dimension_numbers((1,) * 4, (1,) * 4, LAYOUTS[2])


def jax_step(compiled, ts, x, y):
  """One compiled training step, carrying the (donated) train state across calls; zero-argument, for
  `interleaved_medians`."""
  carried = [ts]

  def run():
    carried[0], metrics = compiled(carried[0], x, y)
    return metrics

  return run


def page_faults_per_step(step, reps):
  """Minor page faults per call of `step` (already warm), averaged over `reps` calls: the pages a step touches
  for the first time, such as a scratch buffer the allocator mapped afresh."""
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(reps):
    jax.block_until_ready(step())
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / reps


def convolution_equations(jaxpr, times=1):
  """`(eqn, times)` for every convolution equation in `jaxpr` and the jaxprs nested in its equations."""
  for eqn in jaxpr.eqns:
    if eqn.primitive in FUNCONV_CONVOLUTIONS or eqn.primitive is lax.conv_general_dilated_p:
      yield eqn, times
    inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, (core.Jaxpr, core.ClosedJaxpr)):
          yield from convolution_equations(getattr(sub, "jaxpr", sub), inner)


def classify(eqn):
  """`(direction, role, layer)`: "forward" or "backward", what the equation computes, and the layer
  as `(x shape, w shape, strides)`."""
  ins, outs = [v.aval.shape for v in eqn.invars], [v.aval.shape for v in eqn.outvars]
  pick = lambda where: (ins if where[0] == "in" else outs)[where[1]]
  if eqn.primitive is lax.conv_general_dilated_p:
    p = eqn.params
    dn = p["dimension_numbers"]
    if dn == NATIVE_FORWARD:
      return "forward", "forward", (ins[0], ins[1], p["window_strides"])
    if dn.out_spec[0] != NATIVE_FORWARD.out_spec[0]:  # the result's "batch" axis is not its first: a kernel
      return "backward", "kernel grad", (ins[0], outs[0], p["rhs_dilation"])
    return "backward", "input grad", (outs[0], ins[1], p["lhs_dilation"])  # lax spreads the cotangent by the stride
  if eqn.primitive not in FUNCONV_OPERANDS:
    raise NotImplementedError(f"no role for funconv primitive {eqn.primitive} ({eqn.params}): extend FUNCONV_OPERANDS")
  role, x, w = FUNCONV_OPERANDS[eqn.primitive]
  return "backward" if role != "forward" else "forward", role, (pick(x), pick(w), eqn.params["spec"].strides)


def layer_label(layer):
  (_, *spatial, c_in), w, strides = layer
  return f"{'x'.join(map(str, spatial))}x{c_in} {'x'.join(map(str, w[:-2]))}/{strides[0]} -> {w[-1]}"


def equation_alone(eqn, key):
  """A zero-argument function running `eqn` by itself, jitted, on random operands of its shapes."""
  keys = jax.random.split(key, len(eqn.invars))
  operands = [jax.random.normal(k, v.aval.shape, v.aval.dtype) for k, v in zip(keys, eqn.invars)]
  run = jax.jit(lambda *args: eqn.primitive.bind(*args, **eqn.params))
  return lambda: run(*operands)


def convolution_parts(jaxprs, reps):
  """`{(direction, layer): {kind: dict(ms, equations)}}`: each layer's convolutions timed alone (`ms`
  the total over its `equations`), every kind's equations for one part interleaved."""
  groups = collections.defaultdict(lambda: collections.defaultdict(dict))
  for kind, jaxpr in jaxprs.items():
    for eqn, times in convolution_equations(jaxpr.jaxpr):
      direction, role, layer = classify(eqn)
      signature = (eqn.primitive.name, tuple(v.aval.str_short() for v in eqn.invars), str(eqn.params))
      entry = groups[direction, layer][kind].setdefault(signature, dict(eqn=eqn, role=role, count=0))
      entry["count"] += times
  network_order = [layer for direction, layer in groups if direction == "forward"]  # backward rows in it too
  parts = {}
  for part, by_kind in sorted(
    groups.items(), key=lambda item: (item[0][0] == "backward", network_order.index(item[0][1]))
  ):
    entries = [(kind, entry) for kind, signatures in by_kind.items() for entry in signatures.values()]
    times = interleaved_medians(
      [equation_alone(e["eqn"], jax.random.key(i)) for i, (_, e) in enumerate(entries)], (), reps
    )
    parts[part] = {kind: dict(ms=0.0, equations=[]) for kind in jaxprs}
    for (kind, entry), t in zip(entries, times):
      parts[part][kind]["ms"] += entry["count"] * t * 1e3
      parts[part][kind]["equations"].append(
        dict(
          primitive=entry["eqn"].primitive.name,
          role=entry["role"],
          count=entry["count"],
          ms_each=t * 1e3,
          operands=[v.aval.str_short() for v in entry["eqn"].invars],
        )
      )
  return parts


def batch_norm_fwd_bwd(shape, batch):
  """Zero-argument: BatchNorm in training mode on `(batch, *shape)`, gradients for input and params
  of `<y, cotangent>`, and the updated running averages."""
  bn = fc.BatchNorm()
  _, params, state = bn.init(jax.random.key(0), shape)
  x, cotangent = (jax.random.normal(k, (batch, *shape), jnp.float32) for k in jax.random.split(jax.random.key(1)))

  def loss(params, x):
    y, new_state = fc.batched(bn.apply)(params, state, x, train=True)
    return jnp.vdot(y, cotangent), new_state

  grads = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
  return lambda: grads(params, x)


def batch_norm_counts(model, shape):
  """`{input shape: number of BatchNorm layers}` of `model` on `shape` inputs."""
  rows = fc.summary(model, shape, print_fn=None)["rows"]
  return collections.Counter(tuple(r["input_shape"]) for r in rows if r["type"] == "BatchNorm")


def adam_update(params):
  """Zero-argument: Adam's update and its application to `params`, on random gradients."""
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)
  leaves, tree = jax.tree.flatten(params)
  grads = tree.unflatten(
    [jax.random.normal(jax.random.key(i), leaf.shape, leaf.dtype) for i, leaf in enumerate(leaves)]
  )

  @jax.jit
  def update(grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return lambda: update(grads, opt_state, params)


def step_jaxpr(model, optimizer, ts, x, y, native):
  """The training step's jaxpr, traced from a fresh `make_steps` (jit's cache would otherwise hand back
  the other kind's trace)."""
  step, _ = train.make_steps(model, optimizer)
  with native_convolution() if native else contextlib.nullcontext():
    return jax.make_jaxpr(step)(ts, x, y)


def torch_parts(step, reps):
  """PyTorch's parts per step (ms) from `torch.profiler`: inclusive CPU time per op and input shape."""
  from torch.profiler import ProfilerActivity, profile

  with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(reps):
      step()
  nhwc = lambda s: (s[0], *s[2:], s[1])
  hwio = lambda s: (*s[2:], s[1], s[0])
  parts = collections.defaultdict(float)
  for event in prof.key_averages(group_by_input_shape=True):
    ms, shapes = event.cpu_time_total / 1e3 / reps, event.input_shapes
    if event.key == "aten::conv2d":
      parts["forward", (nhwc(shapes[0]), hwio(shapes[1]))] += ms
    elif event.key == "aten::convolution_backward":
      parts["backward", (nhwc(shapes[1]), hwio(shapes[2]))] += ms
    elif event.key in ("aten::batch_norm", "aten::native_batch_norm_backward"):
      parts["batch_norm", nhwc(shapes[0])] += ms
    elif event.key.startswith("Optimizer.step#"):
      parts["adam"] += ms
  return parts


def table_rows(convolutions, batch_norms, adam_ms, torch_ms, whole, batch):
  """`[(part, count, {column: ms})]`: per-layer convolutions, their totals, BatchNorm, Adam, the rest, the whole."""
  columns, rows = tuple(whole), []
  nan = float("nan")
  for (direction, layer), by_kind in convolutions.items():
    count = sum(e["count"] for e in convolutions["forward", layer]["funconv"]["equations"])  # layers of this shape
    rows.append(
      (
        f"conv {direction} {layer_label(layer)}",
        count,
        {kind: part["ms"] for kind, part in by_kind.items()}
        | ({"torch": torch_ms.get((direction, layer[:2]), nan)} if "torch" in columns else {}),
      )
    )
  for direction in ("forward", "backward"):
    mine = [ms for part, _, ms in rows if part.startswith(f"conv {direction} ")]
    rows.append((f"**conv {direction}, all layers**", None, {k: sum(ms[k] for ms in mine) for k in columns}))
  for shape, (count, ms_each) in batch_norms.items():
    rows.append(
      (
        f"BatchNorm fwd+bwd {'x'.join(map(str, shape))}",
        count,
        {k: count * ms_each for k in columns}
        | ({"torch": torch_ms.get(("batch_norm", (batch, *shape)), nan)} if "torch" in columns else {}),
      )
    )
  rows.append(
    (
      "Adam update",
      1,
      {k: adam_ms for k in columns} | ({"torch": torch_ms.get("adam", nan)} if "torch" in columns else {}),
    )
  )
  parts = {k: sum(ms[k] for part, _, ms in rows if not part.startswith("**")) for k in columns}
  return rows + [
    ("**sum of parts**", None, parts),
    (
      "everything else (elementwise, ReLU, pooling, loss, fusion boundaries)",
      None,
      {k: whole[k] - parts[k] for k in columns},
    ),
    ("**whole step**", None, whole),
  ]


def role_totals(convolutions):
  """`{kind: {role: (equations, ms)}}` over all layers."""
  totals = collections.defaultdict(lambda: collections.defaultdict(lambda: (0, 0.0)))
  for by_kind in convolutions.values():
    for kind, part in by_kind.items():
      for e in part["equations"]:
        n, ms = totals[kind][e["role"]]
        totals[kind][e["role"]] = (n + e["count"], ms + e["count"] * e["ms_each"])
  return totals


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=20, help="timed runs of every part and of the whole step")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "profile_step.json"))
  apply_host_memory = host_memory_option(parser)
  args = parser.parse_args()
  reuse_host_memory = apply_host_memory(args)
  model, kinds = models.resnet20(), ("funconv", "native")
  runs = {kind: compiled_step(model, SHAPE, args.batch, kind == "native") for kind in kinds}
  _, ts, x, y, _, _ = runs["funconv"]
  # Everything that reads the initial train state comes before the first step donates it.
  jaxprs = {kind: step_jaxpr(model, optax.adam(1e-3), ts, x, y, kind == "native") for kind in kinds}
  adam = adam_update(jax.tree.map(jnp.copy, ts.params))
  steps = {kind: jax_step(*runs[kind][:4]) for kind in kinds}
  if torch is not None:
    from bench_torch import set_torch_threads, to_torch_images, to_torch_labels, torch_step, torch_twin

    set_torch_threads()
    twin, _, _ = torch_twin("ResNet-20", model, SHAPE, ts.params, ts.state)
    labels = to_torch_labels(y)
    steps["torch"] = torch_step(twin, torch.optim.Adam(twin.parameters(), lr=1e-3), to_torch_images(x), labels)
  print(
    f"ResNet-20 training step (forward, backward, Adam), batch {args.batch}; jax {jax.__version__}"
    + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch is not None else "")
    + f"; medians of {args.reps} runs; parts timed alone\n"
  )

  whole = dict(zip(steps, (t * 1e3 for t in interleaved_medians(list(steps.values()), (), args.reps))))
  faults = {kind: page_faults_per_step(step, args.reps) for kind, step in steps.items()}
  convolutions = convolution_parts(jaxprs, args.reps)
  bn_counts = batch_norm_counts(model, SHAPE)
  bn_ms = interleaved_medians([batch_norm_fwd_bwd(shape, args.batch) for shape in bn_counts], (), args.reps)
  batch_norms = {shape: (count, t * 1e3) for (shape, count), t in zip(bn_counts.items(), bn_ms)}
  (adam_s,) = interleaved_medians([adam], (), args.reps)
  torch_ms = torch_parts(steps["torch"], args.reps) if torch is not None else {}
  rows = table_rows(convolutions, batch_norms, adam_s * 1e3, torch_ms, whole, args.batch)

  names = {"funconv": "funconv", "native": "native", "torch": "PyTorch"}
  print(
    "| part | count | "
    + " | ".join(f"{names[k]} ms" for k in whole)
    + " | "
    + " | ".join(f"{names[k]} share" for k in whole)
    + " |"
  )
  print("|" + "---|" * (2 + 2 * len(whole)))
  for part, count, ms in rows:
    print(
      f"| {part} | {'' if count is None else count} | "
      + " | ".join(f"{ms[k]:.2f}" for k in whole)
      + " | "
      + " | ".join(f"{100 * ms[k] / whole[k]:.0f}%" for k in whole)
      + " |"
    )
  roles = role_totals(convolutions)
  print(
    "\nconvolutions by role: "
    + "; ".join(
      f"{kind}: " + ", ".join(f"{role} {n}x {ms:.1f} ms" for role, (n, ms) in roles[kind].items()) for kind in kinds
    )
  )
  parts = rows[-3][2]
  print(
    "; ".join(
      f"{names[k]}: sum of parts {parts[k]:.1f} ms = {100 * parts[k] / whole[k]:.0f}% of the whole step "
      f"({whole[k]:.1f} ms)"
      for k in whole
    )
  )
  print(
    "minor page faults per step: "
    + ", ".join(f"{names[k]} {n:,.0f}" for k, n in faults.items())
    + (" (the allocator keeps freed memory)" if reuse_host_memory else " (--fresh-memory)")
  )
  write_results(
    args.out,
    jax=jax.__version__,
    reuse_host_memory=reuse_host_memory,
    torch=torch.__version__ if torch is not None else None,
    batch=args.batch,
    reps=args.reps,
    device=jax.devices()[0].device_kind,
    cpu_count=os.cpu_count(),
    load_average=os.getloadavg(),
    page_faults_per_step=faults,
    rows=[
      dict(part=part.strip("*"), count=count, ms=ms, share={k: ms[k] / whole[k] for k in whole})
      for part, count, ms in rows
    ],
    convolution_roles={
      kind: {role: dict(equations=n, ms=ms) for role, (n, ms) in by_role.items()} for kind, by_role in roles.items()
    },
    convolution_equations=[
      dict(direction=d, layer=layer_label(layer), **{k: p["equations"] for k, p in by.items()})
      for (d, layer), by in convolutions.items()
    ],
  )


if __name__ == "__main__":
  main()
