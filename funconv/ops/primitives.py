"""funconv's convolution as three JAX primitives, closed under transposition.

- `conv_p(x, w)`: `x` `(n, *in_spatial, C)`, `w` `(*window, C // groups, C_out)` -> `y` `(n, *O, C_out)`;
- `conv_input_grad_p(g, w)`: `J_x^T g`, `(n, *O, C_out)` -> `(n, *in_spatial, C)`;
- `conv_kernel_grad_p(x, g)`: `J_w^T g`, -> `(*window, C // groups, C_out)`.

Each is bilinear, and the transpose of each in either argument is another of the three (so grad of
grad, jvp of grad and `jax.hessian` stay on funconv's algorithms), which `ad.defbilinear` turns
into JVP and transpose rules. All three take one static `spec` (`plan.ConvSpec`, the forward
convolution's geometry) and lower to `funconv.ops.algorithms` through `mlir.lower_fun`: pads,
slices, reshapes and dot_generals, never a native convolution. Their batching rules fold a
vmapped axis into the batch (input or cotangent only), into the output channels (kernel only), or
into feature groups (both: per-example kernel gradients, model ensembles).
"""
import functools

import jax
import jax.numpy as jnp
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funconv.ops import algorithms
from funconv.ops.plan import ConvSpec


@functools.lru_cache(maxsize=256)
def _compiled(prim, spec):
  """Eager calls: the primitive compiled alone (under `jit` it lowers to the algorithms)."""
  return jax.jit(lambda a, b: prim.bind(a, b, spec=spec))


def _define(name, impl, shape_rule):
  prim = Primitive(name)
  prim.def_impl(lambda a, b, *, spec: _compiled(prim, spec)(a, b))
  prim.def_abstract_eval(lambda a, b, *, spec: ShapedArray(shape_rule(a.shape, b.shape, spec), a.dtype))

  def lowered(a, b, *, spec):
    shape = shape_rule(a.shape, b.shape, spec)
    if 0 in (*shape, *a.shape, *b.shape):   # an empty sum, or nothing to compute: lax gives zeros
      return jnp.zeros(shape, a.dtype)
    return impl(a, b, spec)

  mlir.register_lowering(prim, mlir.lower_fun(lowered, multiple_results=False))
  return prim


conv_p = _define("funconv_conv", algorithms.conv,
                 lambda x, w, spec: (x[0], *spec.out, w[-1]))
conv_input_grad_p = _define("funconv_conv_input_grad", algorithms.input_grad_of_conv,
                            lambda g, w, spec: (g[0], *spec.in_spatial, w[-2] * spec.groups))
conv_kernel_grad_p = _define("funconv_conv_kernel_grad", algorithms.kernel_grad_of_conv,
                             lambda x, g, spec: (*spec.window, x[-1] // spec.groups, g[-1]))


# The transposes: <conv(x, w), t> = <x, input_grad(t, w)> = <w, kernel_grad(x, t)>.
ad.defbilinear(conv_p,
               lambda ct, x, w, *, spec: conv_input_grad_p.bind(ct, w, spec=spec),
               lambda ct, x, w, *, spec: conv_kernel_grad_p.bind(x, ct, spec=spec))
ad.defbilinear(conv_input_grad_p,
               lambda ct, g, w, *, spec: conv_p.bind(ct, w, spec=spec),
               lambda ct, g, w, *, spec: conv_kernel_grad_p.bind(ct, g, spec=spec))
ad.defbilinear(conv_kernel_grad_p,
               lambda ct, x, g, *, spec: conv_input_grad_p.bind(g, ct, spec=spec),
               lambda ct, x, g, *, spec: conv_p.bind(x, ct, spec=spec))


# Batching. `a` below is the per-example operand (x or g, with a leading batch axis n), `b` the other.

def _to_front(a, dim, size):
  """`a` with its vmapped axis first (broadcast to `size` if it has none)."""
  if dim is None:
    return jnp.broadcast_to(a[None], (size, *a.shape))
  return jnp.moveaxis(a, dim, 0)


def _fold_into_batch(a, dim):
  """`(.., v, ..)` vmapped at `dim` over a `(n, ...)` operand -> `(v * n, ...)`."""
  a = jnp.moveaxis(a, dim, 0)
  return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _fold_into_channels(a, dim, size, axis):
  """Move the vmapped axis (of `size`) just before `axis` and merge it into that axis, major."""
  a = _to_front(a, dim, size)
  axis = axis % (a.ndim - 1)
  a = jnp.moveaxis(a, 0, axis)
  return a.reshape(*a.shape[:axis], size * a.shape[axis + 1], *a.shape[axis + 2:])


def _unfold_channels(y, size, axis=-1):
  """Inverse of `_fold_into_channels` for `y`'s `axis`, the vmapped axis returned first."""
  axis = axis % y.ndim
  y = y.reshape(*y.shape[:axis], size, y.shape[axis] // size, *y.shape[axis + 1:])
  return jnp.moveaxis(y, axis, 0)


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
  folded = [_fold_into_channels(a, d, v, -1) for a, d in zip(args, dims)]
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
