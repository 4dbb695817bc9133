"""funconv's convolution as JAX primitives, closed under transposition.

Three bilinear primitives, each the others' transpose:

- `conv_p(x, w)`: `x` `(n, *in_spatial, C)`, `w` `(*window, C // groups, C_out)` -> `y` `(n, *O, C_out)`;
- `conv_input_grad_p(g, w)`: `J_x^T g`, `(n, *O, C_out)` -> `(n, *in_spatial, C)`;
- `conv_kernel_grad_p(x, g)`: `J_w^T g`, -> `(*window, C // groups, C_out)`.

and for each, `B(a, b)`, two more that fuse what differentiation asks of it into one pass over
the batch: its tangent `B(ta, b) + B(a, tb)` (the JVP when both operands are perturbed) and its
cotangents `(A(ct, b), B'(a, ct))` (the tangent's transpose: both gradients of a backward pass).
So grad, grad of grad, jvp of grad and `jax.hessian` stay on funconv's algorithms. All take one
static `spec` (`plan.ConvSpec`, the forward convolution's geometry) and lower to
`funconv.ops.algorithms` through `mlir.lower_fun`: pads, slices, reshapes and dot_generals, never
a native convolution (a dilated convolution that the plan runs by phases lowers to the undilated
primitives on its input's phases, `funconv.ops.phases`). The bilinear primitives' batching rules
fold a vmapped axis into the batch (input or cotangent only), into the output channels (kernel
only), or into feature groups (both: per-example kernel gradients, model ensembles); the fused
ones batch and differentiate as the bilinear primitives they are made of.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.core import Primitive
from jax._src import dispatch
from jax.interpreters import ad, batching, mlir
from jax.sharding import NamedSharding, PartitionSpec as P

from funconv.ops import algorithms, phases
from funconv.ops.plan import phase_spec


@functools.lru_cache(maxsize=256)
def _compiled(prim, spec):
  """Eager calls: the primitive compiled alone (under `jit` it lowers to the algorithms)."""
  return jax.jit(lambda *args: prim.bind(*args, spec=spec))


# Sharding. Every operand and result is either per-example (a leading batch axis) or kernel-shaped,
# and each primitive is parallel over the batch: on a batch-sharded input every device runs the
# algorithm on its own examples, and kernel-shaped results (sums over the examples) are summed over
# the devices. On an Explicit mesh the batch's mesh axes are in the operands' types and the
# lowering runs under `jax.shard_map` over them; on an Auto mesh the partitioner chooses the
# shardings, so the lowering is a `custom_partitioning` that takes the batch's and leaves the rest
# replicated. Either way no device gathers another's activations (a loop over the batch inside
# the algorithms would otherwise make the partitioner gather the whole batch).


def _batch_axes(avals, per_example, name):
  """The mesh axes that shard the batch in the operands' (Explicit) types, or None; only the batch
  axis may be sharded."""
  axes = {aval.sharding.spec[0] for aval, batched in zip(avals, per_example) if batched}
  rest = [(aval.sharding.spec[1:] if batched else aval.sharding.spec) for aval, batched in zip(avals, per_example)]
  if len(axes) > 1 or any(entry is not None for spec in rest for entry in spec):
    raise ValueError(
      f"{name}: only the batch axis of a convolution may be sharded, the same way for every "
      f"batched operand, and the kernel replicated; got operands "
      f"{[aval.str_short(short_dtypes=True) for aval in avals]}: use jax.sharding.reshard"
    )
  return axes.pop() if axes else None


def _results_per_device(impl, per_example_out, axes):
  """`impl` on one device's examples: its kernel-shaped results summed over the batch's `axes`."""

  def local(*args, spec):
    out = impl(*args, spec)
    outs = [
      o if batched or axes is None else lax.psum(o, axes)
      for o, batched in zip(out if len(per_example_out) > 1 else [out], per_example_out)
    ]
    return outs if len(per_example_out) > 1 else outs[0]

  return local


def _auto_partitioned(impl, per_example, per_example_out):
  """`impl(*args, spec)` as a `custom_partitioning` parallel over the batch (Auto meshes).

  `custom_partitioning` traces its body once at the global shapes and refuses any array constant in
  it (a kernel's constant matrix): that trace's constants become operands of their own, replicated,
  which each device's body (traced again at its local shapes) does not need. The trace and the
  `custom_partitioning` are made once per spec, operand types and default matmul precision, and
  shared by every program that lowers that convolution (within one program JAX already lowers
  identical equations once)."""

  def shardings(mesh, arg_shapes, result_shape):
    n = next(a.shape[0] for a, batched in zip(arg_shapes, per_example) if batched)
    # The first batched operand split over the mesh decides; a replicated one (its sharding possibly a
    # GSPMDSharding, which has no spec) is sliced to match on each device, never gathered.
    axes = next(
      (
        a.sharding.spec[0]
        for a, batched in zip(arg_shapes, per_example)
        if batched and isinstance(a.sharding, NamedSharding) and len(a.sharding.spec) and a.sharding.spec[0]
      ),
      None,
    )
    if axes is not None and n % math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,))):
      axes = None
    named = lambda batched: NamedSharding(mesh, P(axes if batched else None))
    outs = [named(batched) for batched in per_example_out]
    args = [named(batched) for batched in per_example] + [named(False)] * (len(arg_shapes) - len(per_example))
    return axes, args, outs if len(outs) > 1 else outs[0]

  def partition(spec, mesh, arg_shapes, result_shape):
    axes, arg_shardings, out_shardings = shardings(mesh, arg_shapes, result_shape)
    local = _results_per_device(impl, per_example_out, axes)
    return mesh, lambda *args: local(*args[: len(per_example)], spec=spec), out_shardings, tuple(arg_shardings)

  def rule(spec, mesh, operand_types, result_types):
    """Einsum-like: the batch factor `b` shared by the per-example tensors, every other axis
    a factor of its own that stays replicated."""
    tensors = [*per_example, *[False] * (len(operand_types) - len(per_example)), *per_example_out]
    ranks = [len(t.shape) for t in [*operand_types, *result_types]]
    names = [
      ["b"] * batched + [f"t{i}_{d}" for d in range(batched, rank)]
      for i, (batched, rank) in enumerate(zip(tensors, ranks))
    ]
    text = lambda group: ", ".join(" ".join(n) for n in group)
    extra = [f for n in names for f in n if f != "b"]
    reductions = ("b",) if any(per_example) and not any(per_example_out) else ()
    return f"{text(names[: len(operand_types)])} -> {text(names[len(operand_types) :])}", dict(
      reduction_factors=reductions, need_replication_factors=tuple(extra)
    )

  @functools.lru_cache(maxsize=256)
  def built(spec, avals, default_precision):
    """The partitioned call and its constants for operands of these types (`default_precision`, which
    the trace reads, only keys the cache)."""
    closed = jax.make_jaxpr(lambda *a: impl(*a, spec))(*avals)
    count = len(avals)

    def body(spec, *operands):
      out = jax.core.eval_jaxpr(closed.jaxpr, operands[count:], *operands[:count])
      return out if len(per_example_out) > 1 else out[0]

    partitioned = custom_partitioning(body, static_argnums=(0,))
    partitioned.def_partition(
      partition, infer_sharding_from_operands=lambda spec, *a: shardings(*a)[2], sharding_rule=rule
    )
    return partitioned, closed.consts

  def call(spec, *args):
    partitioned, consts = built(spec, tuple(map(jax.typeof, args)), jax.config.jax_default_matmul_precision)
    return partitioned(spec, *args, *consts)

  return call


def _primitive(name, impl, shape_rule, per_example, per_example_out, lower_by_phases, channels):
  """A primitive of arrays and one static `spec`: `shape_rule(*shapes, spec)` gives its output
  shapes (a list, one per entry of `per_example_out`), in the first operand's dtype; it lowers to
  `impl(*arrays, spec)`, or to `lower_by_phases(spec, phase, *arrays)` where the plan runs the
  convolution by phases on the backend lowered for (`plan.phase_spec`, given the input channels of
  the forward convolution, `channels(*shapes, spec)`). `per_example` / `per_example_out` say which
  operands and results have a leading batch axis."""
  prim = Primitive(name)
  multiple_results = prim.multiple_results = len(per_example_out) > 1

  def shapes(args, spec):
    out = shape_rule(*(a.shape for a in args), spec)
    return out if multiple_results else [out]

  def abstract_eval(*args, spec):
    axes = _batch_axes(args, per_example, name)
    mesh = args[0].sharding.mesh
    avals = [
      args[0].update(
        shape=s, weak_type=False, sharding=NamedSharding(mesh, P(axes if batched else None, *[None] * (len(s) - 1)))
      )
      for s, batched in zip(shapes(args, spec), per_example_out)
    ]
    return avals if multiple_results else avals[0]

  prim.def_impl(lambda *args, spec: _compiled(prim, spec)(*args))
  prim.def_abstract_eval(abstract_eval)
  partitioned = _auto_partitioned(impl, per_example, per_example_out)

  def lowered(*args, spec, several_devices):
    out = shapes(args, spec)
    if any(0 in shape for shape in [*out, *(a.shape for a in args)]):  # an empty sum, or nothing to compute
      zeros = [jnp.zeros(shape, args[0].dtype) for shape in out]
      return zeros if multiple_results else zeros[0]
    avals = [jax.typeof(a) for a in args]
    axes = _batch_axes(avals, per_example, name)
    if axes is not None:  # Explicit mesh: the batch's mesh axes are in the types
      in_specs = tuple(P(axes) if batched else P() for batched in per_example)
      out_specs = [P(axes) if batched else P() for batched in per_example_out]
      return jax.shard_map(
        functools.partial(_results_per_device(impl, per_example_out, axes), spec=spec),
        mesh=avals[0].sharding.mesh,
        in_specs=in_specs,
        out_specs=out_specs if multiple_results else out_specs[0],
        check_vma=False,
      )(*args)
    if not several_devices:
      return impl(*args, spec)
    return partitioned(spec, *args)

  def lowering(ctx, *args, spec):
    several = getattr(ctx.module_context.axis_context, "num_devices", 2) > 1  # else nothing to partition
    spec = spec._replace(backend=ctx.module_context.platforms[0])  # the plan may differ per backend
    avals = ctx.avals_in
    phase = phase_spec(spec, channels(*(a.shape for a in avals), spec), avals[0].dtype)
    fn = (
      functools.partial(lower_by_phases, spec, phase)
      if phase
      else functools.partial(lowered, spec=spec, several_devices=several)
    )
    return mlir.lower_fun(fn, multiple_results=multiple_results)(ctx, *args)

  mlir.register_lowering(prim, lowering)
  # The nested custom_partitioning needs the device assignment while lowering, which JAX provides
  # only to primitives on this list (its own custom_partitioning is on it); there is no public hook.
  dispatch.prim_requires_devices_during_lowering.add(prim)
  return prim


def _bilinear(name, impls, shape_rule, per_example, by_phases, channels):
  """`B(a, b)`, its tangent `B(ta, b) + B(a, tb)` and its transposes `(A(ct, b), B'(a, ct))`, as
  three primitives lowered to `impls` (the last two each one scan over the batch). `per_example`
  says which of `(a, b, B(a, b))` have a leading batch axis; `channels(a, b, spec)` (shapes) is
  the forward convolution's input channels. Where the plan runs the convolution by phases, `B`
  lowers to `by_phases(spec, phase)(a, b)` and the other two to its derivatives."""
  impl, tangent_impl, cotangents_impl = impls
  a, b, out = per_example

  def tangent(spec, phase, a, b, ta, tb):
    return jax.jvp(by_phases(spec, phase), (a, b), (ta, tb))[1]

  def cotangents(spec, phase, a, b, ct):
    return list(jax.vjp(by_phases(spec, phase), a, b)[1](ct))

  def bilinear(spec, phase, a, b):
    return by_phases(spec, phase)(a, b)

  forward_channels = lambda a, b, *rest: channels(a, b, rest[-1])  # every primitive's operands start with (a, b)
  return (
    _primitive(name, impl, shape_rule, (a, b), (out,), bilinear, forward_channels),
    _primitive(
      f"{name}_tangent",
      tangent_impl,
      lambda a, b, ta, tb, spec: shape_rule(a, b, spec),
      (a, b, a, b),
      (out,),
      tangent,
      forward_channels,
    ),
    _primitive(
      f"{name}_cotangents",
      cotangents_impl,
      lambda a, b, ct, spec: [a, b],
      (a, b, out),
      (a, b),
      cotangents,
      forward_channels,
    ),
  )


# A dilated convolution run by phases (`funconv.ops.phases`, decided by `plan.phase_spec` for the
# backend lowered for) lowers to the undilated primitives bound on the input's phases: the three
# bilinear functions below, and JAX's derivatives of them for the tangent and cotangents. The
# transposes are vjps at a zero primal point (the unused primal convolution is dead code to XLA),
# whose zeros vary over the devices as the other operand does, keep its sharding where they share
# its shape, and so need no cast that would sum a per-device gradient over the devices.


def _conv_by_phases(spec, phase):
  return lambda x, w: phases.conv(
    x, w, spec, phase, lambda x_phases, kernel: bind(conv_p, x_phases, kernel, spec=phase)
  )


def _input_grad_by_phases(spec, phase):
  def input_grad(g, w):
    shape = (g.shape[0], *spec.in_spatial, w.shape[-2] * spec.groups)
    x = jnp.zeros_like(g, shape=shape, out_sharding=jax.typeof(g).sharding)
    return jax.vjp(lambda x: _conv_by_phases(spec, phase)(x, w), x)[1](g)[0]

  return input_grad


def _kernel_grad_by_phases(spec, phase):
  def kernel_grad(x, g):
    w = jnp.zeros_like(x, shape=(*spec.window, x.shape[-1] // spec.groups, g.shape[-1]))
    return jax.vjp(lambda w: _conv_by_phases(spec, phase)(x, w), w)[1](g)[0]

  return kernel_grad


# Each family's forward-convolution input channels, from its bilinear primitive's operand shapes
# `(a, b)` and spec: what `plan.phase_spec` is given.
INPUT_CHANNELS = {
  "funconv_conv": lambda x, w, spec: x[-1],
  "funconv_conv_input_grad": lambda g, w, spec: w[-2] * spec.groups,
  "funconv_conv_kernel_grad": lambda x, g, spec: x[-1],
}
conv_p, conv_tangent_p, conv_cotangents_p = _bilinear(
  "funconv_conv",
  (algorithms.conv, algorithms.conv_tangent, algorithms.conv_cotangents),
  lambda x, w, spec: (x[0], *spec.out, w[-1]),
  (True, False, True),
  _conv_by_phases,
  INPUT_CHANNELS["funconv_conv"],
)
conv_input_grad_p, input_grad_tangent_p, input_grad_cotangents_p = _bilinear(
  "funconv_conv_input_grad",
  (algorithms.input_grad_of_conv, algorithms.input_grad_tangent, algorithms.input_grad_cotangents),
  lambda g, w, spec: (g[0], *spec.in_spatial, w[-2] * spec.groups),
  (True, False, True),
  _input_grad_by_phases,
  INPUT_CHANNELS["funconv_conv_input_grad"],
)
conv_kernel_grad_p, kernel_grad_tangent_p, kernel_grad_cotangents_p = _bilinear(
  "funconv_conv_kernel_grad",
  (algorithms.kernel_grad_of_conv, algorithms.kernel_grad_tangent, algorithms.kernel_grad_cotangents),
  lambda x, g, spec: (*spec.window, x[-1] // spec.groups, g[-1]),
  (True, True, False),
  _kernel_grad_by_phases,
  INPUT_CHANNELS["funconv_conv_kernel_grad"],
)


def bind(prim, *args, spec):
  """`prim.bind` with the operands cast to the union of their varying manual axes, as lax's own
  binary ops do under `shard_map`: a kernel replicated over the devices meets per-device inputs as
  a varying value, whose transpose sums its cotangent over those devices."""
  axes = algorithms.varying_over(args)
  return prim.bind(*(algorithms.vary(a, axes) for a in args), spec=spec)


# Differentiation. The transposes: <conv(x, w), t> = <x, input_grad(t, w)> = <w, kernel_grad(x, t)>.
# With both operands perturbed, a bilinear primitive's JVP is its tangent primitive, whose transpose
# is the cotangents primitive: `jax.grad` of a convolution runs one backward scan for both gradients.
# The tangent and cotangents primitives differentiate and batch as the bilinear primitives they are
# made of (`_decomposed`).


def _bilinear_jvp(prim, tangent_p, primals, tangents, *, spec):
  (a, b), (ta, tb) = primals, tangents
  y = prim.bind(a, b, spec=spec)
  if type(ta) is ad.Zero and type(tb) is ad.Zero:
    return y, ad.Zero(jax.typeof(y).to_tangent_aval())
  if type(ta) is ad.Zero:
    return y, prim.bind(a, tb, spec=spec)
  if type(tb) is ad.Zero:
    return y, prim.bind(ta, b, spec=spec)
  return y, tangent_p.bind(a, b, ta, tb, spec=spec)


def _jvp_decomposed(decomposed, primals, tangents, *, spec):
  return jax.jvp(functools.partial(decomposed, spec=spec), tuple(primals), tuple(map(ad.instantiate_zeros, tangents)))


def _batch_decomposed(decomposed, multiple_results, args, dims, *, spec):
  out = jax.vmap(functools.partial(decomposed, spec=spec), in_axes=tuple(dims))(*args)
  return out, ([0] * len(out) if multiple_results else 0)


def _transpose_decomposed(decomposed, cts, *args, spec):
  """The transpose in whichever operands are undefined, through the bilinear primitives."""
  undefined = [i for i, a in enumerate(args) if ad.is_undefined_primal(a)]

  def linear(*values):
    full = list(args)
    for i, v in zip(undefined, values):
      full[i] = v
    return decomposed(*full, spec=spec)

  avals = [jax.ShapeDtypeStruct(args[i].aval.shape, args[i].aval.dtype) for i in undefined]
  out = [None] * len(args)
  for i, ct in zip(undefined, jax.linear_transpose(linear, *avals)(cts)):
    out[i] = ct
  return out


def _transpose_tangent(cotangents_p, decomposed, ct, a, b, ta, tb, *, spec):
  if type(ct) is ad.Zero:
    return [ad.Zero(v.aval.to_ct_aval()) if ad.is_undefined_primal(v) else None for v in (a, b, ta, tb)]
  if not ad.is_undefined_primal(a) and not ad.is_undefined_primal(b) and all(map(ad.is_undefined_primal, (ta, tb))):
    return [None, None, *cotangents_p.bind(a, b, ct, spec=spec)]
  return _transpose_decomposed(decomposed, ct, a, b, ta, tb, spec=spec)


def _transpose_cotangents(tangent_p, decomposed, cts, a, b, ct, *, spec):
  cts = [ad.instantiate_zeros(c) for c in cts]
  if not ad.is_undefined_primal(a) and not ad.is_undefined_primal(b) and ad.is_undefined_primal(ct):
    return [None, None, tangent_p.bind(a, b, *cts, spec=spec)]
  return _transpose_decomposed(decomposed, cts, a, b, ct, spec=spec)


def _differentiation_rules(prim, tangent_p, cotangents_p, transpose_a, transpose_b):
  """`transpose_a(ct, b, spec)` and `transpose_b(a, ct, spec)`: `prim`'s transposes in `a` and `b`."""
  ad.defbilinear(
    prim, lambda ct, a, b, *, spec: transpose_a(ct, b, spec), lambda ct, a, b, *, spec: transpose_b(a, ct, spec)
  )
  ad.primitive_jvps[prim] = functools.partial(_bilinear_jvp, prim, tangent_p)

  def tangent(a, b, ta, tb, *, spec):
    return prim.bind(ta, b, spec=spec) + prim.bind(a, tb, spec=spec)

  def cotangents(a, b, ct, *, spec):
    return [transpose_a(ct, b, spec), transpose_b(a, ct, spec)]

  for composite, decomposed in ((tangent_p, tangent), (cotangents_p, cotangents)):
    ad.primitive_jvps[composite] = functools.partial(_jvp_decomposed, decomposed)
    batching.primitive_batchers[composite] = functools.partial(
      _batch_decomposed, decomposed, composite.multiple_results
    )
  ad.primitive_transposes[tangent_p] = functools.partial(_transpose_tangent, cotangents_p, tangent)
  ad.primitive_transposes[cotangents_p] = functools.partial(_transpose_cotangents, tangent_p, cotangents)


_differentiation_rules(
  conv_p,
  conv_tangent_p,
  conv_cotangents_p,
  lambda ct, w, spec: conv_input_grad_p.bind(ct, w, spec=spec),
  lambda x, ct, spec: conv_kernel_grad_p.bind(x, ct, spec=spec),
)
_differentiation_rules(
  conv_input_grad_p,
  input_grad_tangent_p,
  input_grad_cotangents_p,
  lambda ct, w, spec: conv_p.bind(ct, w, spec=spec),
  lambda g, ct, spec: conv_kernel_grad_p.bind(ct, g, spec=spec),
)
_differentiation_rules(
  conv_kernel_grad_p,
  kernel_grad_tangent_p,
  kernel_grad_cotangents_p,
  lambda ct, g, spec: conv_input_grad_p.bind(g, ct, spec=spec),
  lambda x, ct, spec: conv_p.bind(x, ct, spec=spec),
)


# Batching: `dims` holds each operand's vmapped axis, None where it is not vmapped.


def _fold_into_batch(a, dim):
  """`(.., v, ..)` vmapped at `dim` over a `(n, ...)` operand -> `(v * n, ...)`."""
  a = jnp.moveaxis(a, dim, 0)
  return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _fold_into_channels(a, dim, size):
  """The vmapped axis (`size`; broadcast if `dim` is None) merged into the last axis, major:
  `(.., C)` -> `(.., size * C)`."""
  a = jnp.broadcast_to(a[None], (size, *a.shape)) if dim is None else jnp.moveaxis(a, dim, 0)
  a = jnp.moveaxis(a, 0, -2)
  return a.reshape(*a.shape[:-2], size * a.shape[-1])


def _unfold_channels(y, size):
  """Inverse of `_fold_into_channels`, the vmapped axis returned first: `(.., size * C)` -> `(size, .., C)`."""
  return jnp.moveaxis(y.reshape(*y.shape[:-1], size, y.shape[-1] // size), -2, 0)


def _per_example_batched(prim, args, dims, spec):
  """Only the per-example operand (first argument) is vmapped: the vmapped axis joins its batch."""
  a, b = args
  v = a.shape[dims[0]]
  y = prim.bind(_fold_into_batch(a, dims[0]), b, spec=spec)
  return y.reshape(v, y.shape[0] // v, *y.shape[1:]), 0


def _grouped(prim, args, dims, spec):
  """Both operands vmapped (an unvmapped one is broadcast): each of the `v` problems becomes a
  group of its own, channels `(v, groups, C // groups)`, so one call computes all of them."""
  v = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
  # Channels last in every operand: x's and g's are (groups, C // groups), w's output channels
  # (groups, C_out // groups); putting the vmapped axis first in each makes v * groups groups.
  folded = [_fold_into_channels(a, d, v) for a, d in zip(args, dims)]
  y = prim.bind(*folded, spec=spec._replace(groups=v * spec.groups))
  return _unfold_channels(y, v), 0


def _conv_batch(args, dims, *, spec):
  x_dim, w_dim = dims
  if w_dim is None:
    return _per_example_batched(conv_p, args, dims, spec)
  if x_dim is None:  # an ensemble of kernels on one input: more output channels
    x, w = args
    w = jnp.moveaxis(w, w_dim, 0)
    v, kernel_in, c_out, groups = w.shape[0], w.shape[1:-1], w.shape[-1], spec.groups
    # Output channels (groups, v, C_out // groups): each group keeps its channels together.
    w = jnp.moveaxis(w.reshape(v, *kernel_in, groups, c_out // groups), 0, -2)
    y = conv_p.bind(x, w.reshape(*kernel_in, groups * v * (c_out // groups)), spec=spec)
    y = jnp.moveaxis(y.reshape(*y.shape[:-1], groups, v, c_out // groups), -2, 0)
    return y.reshape(*y.shape[:-2], c_out), 0
  return _grouped(conv_p, args, dims, spec)


def _input_grad_batch(args, dims, *, spec):
  if dims[1] is None:
    return _per_example_batched(conv_input_grad_p, args, dims, spec)
  return _grouped(conv_input_grad_p, args, dims, spec)


def _kernel_grad_batch(args, dims, *, spec):
  return _grouped(conv_kernel_grad_p, args, dims, spec)


batching.primitive_batchers[conv_p] = _conv_batch
batching.primitive_batchers[conv_input_grad_p] = _input_grad_batch
batching.primitive_batchers[conv_kernel_grad_p] = _kernel_grad_batch
