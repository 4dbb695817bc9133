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
a native convolution. The bilinear primitives' batching rules fold a vmapped axis into the batch
(input or cotangent only), into the output channels (kernel only), or into feature groups (both:
per-example kernel gradients, model ensembles); the fused ones batch and differentiate as the
bilinear primitives they are made of.
"""
import functools

import jax
import jax.numpy as jnp
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funconv.ops import algorithms


@functools.lru_cache(maxsize=256)
def _compiled(prim, spec):
  """Eager calls: the primitive compiled alone (under `jit` it lowers to the algorithms)."""
  return jax.jit(lambda *args: prim.bind(*args, spec=spec))


def _primitive(name, impl, shape_rule, multiple_results=False):
  """A primitive of arrays and one static `spec`: `shape_rule(*shapes, spec)` gives its output
  shape (a list of them with `multiple_results`), in the first operand's dtype; it lowers to
  `impl(*arrays, spec)`."""
  prim = Primitive(name)
  prim.multiple_results = multiple_results
  shapes = lambda args, spec: shape_rule(*(a.shape for a in args), spec)
  avals = lambda args, spec: ([ShapedArray(s, args[0].dtype) for s in shapes(args, spec)] if multiple_results
                              else ShapedArray(shapes(args, spec), args[0].dtype))
  prim.def_impl(lambda *args, spec: _compiled(prim, spec)(*args))
  prim.def_abstract_eval(lambda *args, spec: avals(args, spec))

  def lowered(*args, spec):
    out = shapes(args, spec)
    every = [*(out if multiple_results else [out]), *(a.shape for a in args)]
    if any(0 in shape for shape in every):   # an empty sum, or nothing to compute: lax gives zeros
      zeros = [jnp.zeros(shape, args[0].dtype) for shape in (out if multiple_results else [out])]
      return zeros if multiple_results else zeros[0]
    return impl(*args, spec)

  mlir.register_lowering(prim, mlir.lower_fun(lowered, multiple_results=multiple_results))
  return prim


def _bilinear(name, impls, shape_rule):
  """`B(a, b)`, its tangent `B(ta, b) + B(a, tb)` and its transposes `(A(ct, b), B'(a, ct))`, as
  three primitives lowered to `impls` (the last two each one scan over the batch)."""
  impl, tangent_impl, cotangents_impl = impls
  return (_primitive(name, impl, shape_rule),
          _primitive(f"{name}_tangent", tangent_impl, lambda a, b, ta, tb, spec: shape_rule(a, b, spec)),
          _primitive(f"{name}_cotangents", cotangents_impl, lambda a, b, ct, spec: [a, b], multiple_results=True))


conv_p, conv_tangent_p, conv_cotangents_p = _bilinear(
    "funconv_conv", (algorithms.conv, algorithms.conv_tangent, algorithms.conv_cotangents),
    lambda x, w, spec: (x[0], *spec.out, w[-1]))
conv_input_grad_p, input_grad_tangent_p, input_grad_cotangents_p = _bilinear(
    "funconv_conv_input_grad",
    (algorithms.input_grad_of_conv, algorithms.input_grad_tangent, algorithms.input_grad_cotangents),
    lambda g, w, spec: (g[0], *spec.in_spatial, w[-2] * spec.groups))
conv_kernel_grad_p, kernel_grad_tangent_p, kernel_grad_cotangents_p = _bilinear(
    "funconv_conv_kernel_grad",
    (algorithms.kernel_grad_of_conv, algorithms.kernel_grad_tangent, algorithms.kernel_grad_cotangents),
    lambda x, g, spec: (*spec.window, x[-1] // spec.groups, g[-1]))


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
  ad.defbilinear(prim, lambda ct, a, b, *, spec: transpose_a(ct, b, spec),
                 lambda ct, a, b, *, spec: transpose_b(a, ct, spec))
  ad.primitive_jvps[prim] = functools.partial(_bilinear_jvp, prim, tangent_p)

  def tangent(a, b, ta, tb, *, spec):
    return prim.bind(ta, b, spec=spec) + prim.bind(a, tb, spec=spec)

  def cotangents(a, b, ct, *, spec):
    return [transpose_a(ct, b, spec), transpose_b(a, ct, spec)]

  for composite, decomposed in ((tangent_p, tangent), (cotangents_p, cotangents)):
    ad.primitive_jvps[composite] = functools.partial(_jvp_decomposed, decomposed)
    batching.primitive_batchers[composite] = functools.partial(_batch_decomposed, decomposed,
                                                               composite.multiple_results)
  ad.primitive_transposes[tangent_p] = functools.partial(_transpose_tangent, cotangents_p, tangent)
  ad.primitive_transposes[cotangents_p] = functools.partial(_transpose_cotangents, tangent_p, cotangents)


_differentiation_rules(conv_p, conv_tangent_p, conv_cotangents_p,
                       lambda ct, w, spec: conv_input_grad_p.bind(ct, w, spec=spec),
                       lambda x, ct, spec: conv_kernel_grad_p.bind(x, ct, spec=spec))
_differentiation_rules(conv_input_grad_p, input_grad_tangent_p, input_grad_cotangents_p,
                       lambda ct, w, spec: conv_p.bind(ct, w, spec=spec),
                       lambda g, ct, spec: conv_kernel_grad_p.bind(ct, g, spec=spec))
_differentiation_rules(conv_kernel_grad_p, kernel_grad_tangent_p, kernel_grad_cotangents_p,
                       lambda ct, g, spec: conv_input_grad_p.bind(g, ct, spec=spec),
                       lambda x, ct, spec: conv_p.bind(x, ct, spec=spec))


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
  if x_dim is None:   # an ensemble of kernels on one input: more output channels
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
