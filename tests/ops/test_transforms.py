"""Every JAX transformation of funconv's convolutions and pools, against XLA's native ops.

`fc.ops.conv` and `fc.ops.conv_transpose` are JAX primitives (DESIGN.md section 3), so `jvp`,
`jacfwd`, `jacrev`, `hessian`, `linearize`, `linear_transpose`, `vmap` (any axes), their
compositions, `checkpoint`, `scan` and `check_grads` all work on them and agree with the same
transformation of `lax.conv_general_dilated` (tests.oracle). The pools agree with
`lax.reduce_window`. Configurations are few and tiny: compilation dominates.
"""

import dataclasses
import math
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import funconv as fc
from tests.oracle import assert_close_to_largest, native_conv, native_conv_transpose, sum_error_bound


@dataclasses.dataclass(frozen=True)
class Case:
  """One convolution: `ours` (funconv) and `native` (lax) of `(x, w)`, with fixed arguments."""

  name: str
  x_shape: tuple
  w_shape: tuple
  strides: tuple
  padding: object
  dilation: tuple
  groups: int = 1
  transpose: bool = False

  def ours(self, x, w):
    if self.transpose:
      return fc.ops.conv_transpose(x, w, self.strides, self.padding, self.dilation)
    return fc.ops.conv(x, w, self.strides, self.padding, self.dilation, self.groups)

  def native(self, x, w):
    if self.transpose:
      return native_conv_transpose(x, w, self.strides, self.padding, self.dilation)
    return native_conv(x, w, self.strides, self.padding, self.dilation, self.groups)

  def rng(self):
    return np.random.default_rng(zlib.crc32(self.name.encode()))

  def inputs(self):
    """`(x, w, tx, tw)`: inputs and tangents, float32; `w` scaled so outputs are O(1) (tanh unsaturated)."""
    rng = self.rng()
    fan_in = math.prod(self.w_shape[:-1])
    x = rng.standard_normal(self.x_shape, np.float32)
    w = (rng.standard_normal(self.w_shape) / math.sqrt(fan_in)).astype(np.float32)
    tx = rng.standard_normal(self.x_shape, np.float32)
    tw = (rng.standard_normal(self.w_shape) / math.sqrt(fan_in)).astype(np.float32)
    return x, w, tx, tw

  def out_shape(self):
    x, w, _, _ = self.inputs()
    return jax.eval_shape(self.native, x, w).shape

  def bound(self, order=1):
    """Twice the rounding bound of the longest sum (a kernel's taps and channels, or a kernel cotangent's batch
    and output positions), grown by one such sum per derivative `order` (two programs, two orders of summing)."""
    return 2 * sum_error_bound(max(math.prod(self.w_shape), math.prod(self.out_shape())), growth=order)


def case(name, x_shape, w_shape, strides=1, padding="VALID", dilation=1, groups=1, transpose=False):
  rank = len(w_shape) - 2
  as_tuple = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)
  c = Case(name, x_shape, w_shape, as_tuple(strides), padding, as_tuple(dilation), groups, transpose)
  return pytest.param(c, id=name)


CONV_1D = case("conv1d_stride2_same_two_batch_axes", (2, 2, 9, 3), (3, 3, 4), strides=2, padding="SAME")
CONV_DILATED = case("conv2d_dilation2_pairs", (2, 6, 7, 2), (2, 3, 2, 3), padding=((1, 0), (2, 1)), dilation=2)
CONV_GROUPS = case(
  "conv2d_groups2_reflect_stride12", (2, 5, 6, 4), (3, 3, 2, 4), strides=(1, 2), padding="REFLECT", groups=2
)
CONV_DEPTHWISE = case("conv2d_depthwise_circular", (2, 5, 5, 3), (3, 2, 1, 6), padding="CIRCULAR", groups=3)
CONV_3D = case("conv3d_valid_stride121", (1, 4, 5, 4, 2), (2, 3, 2, 2, 3), strides=(1, 2, 1))
TRANSPOSE_SAME = case("transpose2d_stride2_same", (2, 3, 4, 2), (3, 3, 2, 3), strides=2, padding="SAME", transpose=True)
TRANSPOSE_VALID = case("transpose1d_stride2_valid", (2, 4, 3), (4, 3, 2), strides=2, padding="VALID", transpose=True)

ALL_CASES = [CONV_1D, CONV_DILATED, CONV_GROUPS, CONV_DEPTHWISE, CONV_3D, TRANSPOSE_SAME, TRANSPOSE_VALID]
# The costlier transformations (second order, vmapped jacobians) run on a covering subset.
FEW_CASES = [CONV_1D, CONV_GROUPS, CONV_DEPTHWISE, TRANSPOSE_SAME]


def assert_trees_close(actual, expected, bound):
  """Same tree structure, shapes and dtypes; values within `bound` relative to each leaf's largest entry."""
  chex.assert_trees_all_equal_shapes_and_dtypes(actual, expected)
  assert_close_to_largest(actual, expected, bound)


def agree(transform, c, *args, order=1):
  """`transform(f)(*args)`, jitted, for f = funconv's op and the native one: the results agree within the case's
  bound for derivatives of `order`."""
  actual = jax.jit(transform(c.ours))(*args)
  expected = jax.jit(transform(c.native))(*args)
  assert_trees_close(actual, expected, c.bound(order))
  return actual, expected


def tanh_loss(f):
  """A scalar, non-linear loss of `(x, w)`: second derivatives are not zero."""
  return lambda x, w: jnp.sum(jnp.tanh(f(x, w)))


@pytest.mark.parametrize("c", ALL_CASES)
def test_jvp(c):
  x, w, tx, tw = c.inputs()
  (y, ty), _ = agree(lambda f: lambda x, w, tx, tw: jax.jvp(f, (x, w), (tx, tw)), c, x, w, tx, tw)
  chex.assert_shape([y, ty], [c.out_shape()] * 2)
  assert float(np.max(np.abs(ty))) > 0.1


@pytest.mark.parametrize(
  "c,jac",
  [pytest.param(c.values[0], jax.jacfwd, id=f"jacfwd-{c.id}") for c in ALL_CASES]
  + [pytest.param(c.values[0], jax.jacrev, id=f"jacrev-{c.id}") for c in FEW_CASES],
)
def test_jacobians(c, jac):
  x, w, _, _ = c.inputs()
  (jx, jw), _ = agree(lambda f: jac(f, argnums=(0, 1)), c, x, w)
  chex.assert_shape([jx, jw], [(*c.out_shape(), *x.shape), (*c.out_shape(), *w.shape)])


@pytest.mark.parametrize("c", FEW_CASES)
def test_hessian(c):
  """The full block Hessian in `(x, w)` of `sum(tanh(conv(x, w)))`: forward over reverse."""
  x, w, _, _ = c.inputs()
  if x.shape[0] > 1:  # keep the Hessian small: one example
    x = x[:1]
  ((hxx, hxw), (hwx, hww)), _ = agree(lambda f: jax.hessian(tanh_loss(f), argnums=(0, 1)), c, x, w, order=2)
  chex.assert_shape(
    [hxx, hxw, hwx, hww], [(*x.shape, *x.shape), (*x.shape, *w.shape), (*w.shape, *x.shape), (*w.shape, *w.shape)]
  )
  # Symmetric: the mixed blocks are each other's transpose.
  assert_close_to_largest(
    np.asarray(hxw).reshape(x.size, w.size), np.asarray(hwx).reshape(w.size, x.size).T, c.bound(2)
  )


@pytest.mark.parametrize("c", ALL_CASES)
def test_linearize(c):
  x, w, tx, tw = c.inputs()

  def linearized(f):
    def run(x, w, tx, tw):
      y, f_jvp = jax.linearize(f, x, w)
      return y, f_jvp(tx, tw), f_jvp(2 * tx, -tw)

    return run

  (y, t1, t2), _ = agree(linearized, c, x, w, tx, tw)
  chex.assert_shape(y, c.out_shape())
  assert float(np.max(np.abs(t1 - t2))) > 1e-3  # two different tangents, two different answers


@pytest.mark.parametrize("c", ALL_CASES)
def test_linear_transpose(c):
  """Transpose in `x` with `w` fixed and in `w` with `x` fixed; also equals the VJP."""
  x, w, _, _ = c.inputs()
  ct = c.rng().standard_normal(c.out_shape(), np.float32)

  def transposed(f):
    def run(x, w, ct):
      (dx,) = jax.linear_transpose(lambda x: f(x, w), x)(ct)
      (dw,) = jax.linear_transpose(lambda w: f(x, w), w)(ct)
      return dx, dw

    return run

  (dx, dw), _ = agree(transposed, c, x, w, ct)
  chex.assert_shape([dx, dw], [x.shape, w.shape])
  vjp_x, vjp_w = jax.jit(lambda x, w, ct: jax.vjp(c.ours, x, w)[1](ct))(x, w, ct)
  assert_trees_close((dx, dw), (vjp_x, vjp_w), c.bound())


def stacked(a, axis, n, rng):
  """`n` random arrays like `a` stacked along `axis` (the first one is `a`)."""
  more = [a] + [rng.standard_normal(a.shape).astype(a.dtype) * np.std(a) for _ in range(n - 1)]
  return np.stack(more, axis=axis if axis >= 0 else a.ndim + 1 + axis)


VMAP_MODES = {  # name: (in_axes for (x, w), out_axes)
  "x": ((0, None), 0),
  "w_ensemble": ((None, 0), 0),
  "both": ((0, 0), 0),
  "x_axis1_out_last": ((1, None), -1),
  "w_last_out1": ((None, -1), 1),
  "both_nonzero": ((2, 1), 2),
}


# Every mode on one conv; on the others, the mode that maps both operands at non-zero axes, and a few more.
VMAP_CASES = [pytest.param(CONV_1D.values[0], mode, id=f"{mode}-{CONV_1D.id}") for mode in VMAP_MODES] + [
  pytest.param(c.values[0], mode, id=f"{mode}-{c.id}")
  for c, mode in [
    (TRANSPOSE_SAME, "x_axis1_out_last"),
    (TRANSPOSE_SAME, "w_last_out1"),
    (CONV_DEPTHWISE, "w_ensemble"),
    *((c, "both_nonzero") for c in (CONV_DILATED, CONV_GROUPS, CONV_DEPTHWISE, CONV_3D, TRANSPOSE_VALID)),
  ]
]


@pytest.mark.parametrize("c,mode", VMAP_CASES)
def test_vmap(c, mode):
  in_axes, out_axes = VMAP_MODES[mode]
  x, w, _, _ = c.inputs()
  rng = c.rng()
  xs = x if in_axes[0] is None else stacked(x, in_axes[0], 3, rng)
  ws = w if in_axes[1] is None else stacked(w, in_axes[1], 3, rng)
  y, _ = agree(lambda f: jax.vmap(f, in_axes, out_axes), c, xs, ws)
  expected_shape = list(c.out_shape())
  expected_shape.insert(out_axes if out_axes >= 0 else len(expected_shape) + 1 + out_axes, 3)
  chex.assert_shape(y, tuple(expected_shape))
  # The first slice is the unbatched call.
  assert_close_to_largest(np.take(np.asarray(y), 0, axis=out_axes), jax.jit(c.ours)(x, w), c.bound())


@pytest.mark.parametrize("c", [CONV_1D, CONV_GROUPS, CONV_3D, TRANSPOSE_SAME])
def test_per_example_gradients(c):
  """`vmap(grad)`: one `(dx, dw)` per example of the leading batch axis, w shared."""
  x, w, _, _ = c.inputs()
  (dx, dw), _ = agree(lambda f: jax.vmap(jax.grad(tanh_loss(f), argnums=(0, 1)), in_axes=(0, None)), c, x, w)
  chex.assert_shape([dx, dw], [x.shape, (x.shape[0], *w.shape)])
  # They sum to the gradient of the summed loss.
  _, dw_total = jax.jit(jax.grad(tanh_loss(c.ours), argnums=(0, 1)))(x, w)
  # Two orders of one sum: its terms are at most the examples' positions.
  assert_close_to_largest(dw.sum(0), dw_total, 2 * sum_error_bound(x.size // x.shape[-1]))


def gradient_norm(f):
  """`|d loss/dx|^2 + |d loss/dw|^2`: its gradient is reverse over reverse."""

  def run(x, w):
    gx, gw = jax.grad(tanh_loss(f), argnums=(0, 1))(x, w)
    return jnp.sum(gx**2) + jnp.sum(gw**2)

  return run


@pytest.mark.parametrize("c", ALL_CASES)
def test_grad_of_grad(c):
  x, w, _, _ = c.inputs()
  agree(lambda f: jax.grad(gradient_norm(f), argnums=(0, 1)), c, x, w, order=2)


@pytest.mark.parametrize("c", [CONV_DILATED, CONV_3D, TRANSPOSE_VALID])  # test_hessian covers the others
def test_jvp_of_grad(c):
  """Forward over reverse: the Hessian-vector product."""
  x, w, tx, tw = c.inputs()
  agree(
    lambda f: lambda x, w, tx, tw: jax.jvp(jax.grad(tanh_loss(f), argnums=(0, 1)), (x, w), (tx, tw)),
    c,
    x,
    w,
    tx,
    tw,
    order=2,
  )


@pytest.mark.parametrize(
  "c,policy",
  [
    pytest.param(CONV_1D.values[0], None, id=f"default-{CONV_1D.id}"),
    pytest.param(
      CONV_GROUPS.values[0], jax.checkpoint_policies.nothing_saveable, id=f"nothing_saveable-{CONV_GROUPS.id}"
    ),
    pytest.param(
      TRANSPOSE_SAME.values[0],
      jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
      id=f"dots_saveable-{TRANSPOSE_SAME.id}",
    ),
  ],
)
def test_checkpoint(c, policy):
  """`jax.checkpoint` around a conv layer: value and gradient (recomputed forward), and jvp through it."""
  x, w, tx, tw = c.inputs()

  def rematerialized(f):
    layer = jax.checkpoint(lambda x, w: jnp.tanh(f(x, w)), policy=policy)
    loss = lambda x, w: jnp.sum(layer(x, w) ** 2)
    return lambda x, w, tx, tw: (jax.value_and_grad(loss, argnums=(0, 1))(x, w), jax.jvp(loss, (x, w), (tx, tw)))

  agree(rematerialized, c, x, w, tx, tw)


SCAN_CASES = [  # (name, x shape, stacked kernel shape, op(h, w)): layers that keep the shape
  ("conv2d_groups2_same", (2, 5, 5, 4), (3, 3, 3, 2, 4), lambda conv: lambda h, w: conv(h, w, 1, "SAME", 1, 2)),
  ("conv1d_dilated_reflect", (2, 9, 3), (3, 3, 3, 3), lambda conv: lambda h, w: conv(h, w, 1, "REFLECT", 2, 1)),
  ("transpose1d_same", (2, 7, 3), (3, 3, 3, 3), lambda conv: lambda h, w: conv(h, w, (1,), "SAME", (1,))),
]


@pytest.mark.parametrize("name,x_shape,ws_shape,make", SCAN_CASES, ids=[s[0] for s in SCAN_CASES])
@pytest.mark.parametrize("mode", ["grad", "jvp"])
def test_scan_over_stacked_layers(name, x_shape, ws_shape, make, mode):
  """`lax.scan` over identical layers: carry the activations, scan over the stacked kernels."""
  transpose = name.startswith("transpose")
  ours, native = (fc.ops.conv_transpose, native_conv_transpose) if transpose else (fc.ops.conv, native_conv)
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x = rng.standard_normal(x_shape, np.float32)
  ws = (rng.standard_normal(ws_shape) / math.sqrt(math.prod(ws_shape[1:-1]))).astype(np.float32)
  tx, tws = rng.standard_normal(x.shape, np.float32), rng.standard_normal(ws.shape, np.float32) * 0.1

  def network(conv):
    layer = make(conv)

    def run(x, ws):
      h, _ = lax.scan(lambda h, w: (jnp.tanh(layer(h, w)), None), x, ws)
      return jnp.sum(h * jnp.cos(h))

    return run

  if mode == "grad":
    transform = lambda conv: jax.value_and_grad(network(conv), argnums=(0, 1))
    args = (x, ws)
  else:
    transform = lambda conv: lambda x, ws, tx, tws: jax.jvp(network(conv), (x, ws), (tx, tws))
    args = (x, ws, tx, tws)
  actual = jax.jit(transform(ours))(*args)
  expected = jax.jit(transform(native))(*args)
  # Three layers: the longest sum is a kernel cotangent's over the batch and output positions.
  assert_trees_close(actual, expected, 2 * sum_error_bound(math.prod(x.shape), growth=len(ws)))


@pytest.mark.parametrize("c", [CONV_DILATED, TRANSPOSE_SAME])
def test_check_grads_second_order_forward_and_reverse(c):
  x, w, _, _ = c.inputs()
  x = x.reshape(-1, *x.shape[-len(w.shape) + 1 :])[:1]  # one example keeps the numerical differences cheap
  with jax.enable_x64(True):
    x64, w64 = jnp.asarray(x, jnp.float64), jnp.asarray(w, jnp.float64)
    assert c.ours(x64, w64).dtype == jnp.float64
    check_grads(jax.jit(c.ours), (x64, w64), order=2, modes=["fwd", "rev"])


@pytest.mark.parametrize("c", [CONV_DILATED, TRANSPOSE_SAME])
def test_jvp_and_grad_programs_have_no_native_convolution(c):
  """DESIGN.md section 1 for the new transformations: neither the jaxpr nor the lowered program of
  `jvp` and `grad` holds a native convolution (the same programs of the oracle do)."""
  x, w, tx, tw = c.inputs()
  programs = {
    "jvp": lambda f: lambda x, w, tx, tw: jax.jvp(f, (x, w), (tx, tw)),
    "grad": lambda f: lambda x, w, tx, tw: jax.grad(tanh_loss(f), argnums=(0, 1))(x, w),
    "hvp": lambda f: lambda x, w, tx, tw: jax.jvp(jax.grad(tanh_loss(f), argnums=(0, 1)), (x, w), (tx, tw)),
  }
  for name, program in programs.items():
    native_jaxpr = str(jax.make_jaxpr(program(c.native))(x, w, tx, tw))
    native_hlo = jax.jit(program(c.native)).lower(x, w, tx, tw).as_text()
    assert "conv_general_dilated" in native_jaxpr and "stablehlo.convolution" in native_hlo  # the check can fail
    jaxpr = str(jax.make_jaxpr(program(c.ours))(x, w, tx, tw))
    hlo = jax.jit(program(c.ours)).lower(x, w, tx, tw).as_text()
    assert "conv_general_dilated" not in jaxpr, name
    assert "stablehlo.convolution" not in hlo, name


# ---------------------------------------------------------------------------------------- pooling


def native_pool(x, init, reducer, window, strides, padding):
  rank = len(window)
  pads = fc.ops.resolve_padding(padding, x.shape[-rank - 1 : -1], window, strides, (1,) * rank, "oracle")[0]
  lead = x.ndim - rank - 1
  # A Python scalar init (not a traced one) keeps lax's differentiable reduce_window_{sum,max} primitives.
  return lax.reduce_window(
    x,
    init,
    reducer,
    (1,) * lead + window + (1,),
    (1,) * lead + strides + (1,),
    ((0, 0),) * lead + tuple(pads) + ((0, 0),),
  )


POOLS = {  # name: (ours(x, window, strides, padding), native(x, window, strides, padding))
  "max": (fc.ops.max_pool, lambda x, *g: native_pool(x, -jnp.inf, lax.max, *g)),
  "sum": (fc.ops.sum_pool, lambda x, *g: native_pool(x, 0.0, lax.add, *g)),
  "avg": (fc.ops.avg_pool, lambda x, *g: native_pool(x, 0.0, lax.add, *g) / math.prod(g[0])),
  "l2": (fc.ops.l2_pool, lambda x, *g: jnp.sqrt(native_pool(jnp.square(x), 0.0, lax.add, *g))),
}
POOL_GEOMETRIES = {  # name: (x shape, window, strides, padding)
  "2d_tiled": ((2, 6, 6, 3), (2, 2), (2, 2), "VALID"),
  "2d_overlap_same": ((2, 5, 6, 2), (3, 3), (1, 2), "SAME"),
  "1d_pairs": ((2, 9, 3), (3,), (2,), ((1, 2),)),
}


def pool_case(pool, geometry):
  shape, *g = POOL_GEOMETRIES[geometry]
  # Random normals: no ties in a max window, no zero window in l2.
  x = np.random.default_rng(zlib.crc32(f"{pool}{geometry}".encode())).standard_normal(shape).astype(np.float32)
  ours, native = POOLS[pool]
  return x, (lambda x: ours(x, *g)), (lambda x: native(x, *g))


def pool_bound(order=1):
  """Twice the rounding bound of a 3 x 3 window's sum, a square root or division, and an input cotangent's sum
  over the (up to 3 x 2) windows covering it, grown by one such chain per derivative `order`."""
  return 2 * sum_error_bound(3 * 3 + 3 * 2 + 3, growth=order)


def pool_agree(transform, ours, native, *args, order=1):
  actual = jax.jit(transform(ours))(*args)
  expected = jax.jit(transform(native))(*args)
  assert_trees_close(actual, expected, pool_bound(order))
  return actual


@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
@pytest.mark.parametrize("pool", POOLS)
def test_pool_jvp(pool, geometry):
  x, ours, native = pool_case(pool, geometry)
  tx = np.cos(np.arange(x.size, dtype=np.float32)).reshape(x.shape)
  y, ty = pool_agree(lambda f: lambda x, tx: jax.jvp(f, (x,), (tx,)), ours, native, x, tx)
  assert float(np.max(np.abs(ty))) > 1e-2


@pytest.mark.parametrize(
  "pool,geometry", [("max", "2d_overlap_same"), ("sum", "1d_pairs"), ("avg", "2d_overlap_same"), ("l2", "1d_pairs")]
)
def test_pool_jacrev(pool, geometry):
  x, ours, native = pool_case(pool, geometry)
  jac = pool_agree(jax.jacrev, ours, native, x)
  chex.assert_shape(jac, (*jax.eval_shape(native, x).shape, *x.shape))


@pytest.mark.parametrize(
  "pool,geometry", [("sum", "1d_pairs"), ("avg", "2d_overlap_same"), ("l2", "2d_overlap_same"), ("l2", "1d_pairs")]
)
def test_pool_hessian(pool, geometry):
  x, ours, native = pool_case(pool, geometry)
  x = x[:1]
  hess = pool_agree(lambda f: jax.hessian(lambda x: jnp.sum(jnp.tanh(f(x)))), ours, native, x, order=2)
  chex.assert_shape(hess, (*x.shape, *x.shape))


@pytest.mark.parametrize("pool,axes", [("max", (2, -1)), ("sum", (0, 0)), ("avg", (2, -1)), ("l2", (1, 1))])
def test_pool_vmap(pool, axes):
  x, ours, native = pool_case(pool, "2d_overlap_same")
  xs = stacked(x, axes[0], 3, np.random.default_rng(0))
  y = pool_agree(lambda f: jax.vmap(f, axes[0], axes[1]), ours, native, xs)
  assert_close_to_largest(np.take(np.asarray(y), 0, axis=axes[1]), jax.jit(ours)(x), pool_bound())
  # vmap of the gradient too (per-example input gradients of a pooled loss).
  pool_agree(lambda f: jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(f(x)))), axes[0], axes[1]), ours, native, xs)


@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
@pytest.mark.parametrize("pool", ["sum", "avg"])
def test_pool_linear_transpose(pool, geometry):
  x, ours, native = pool_case(pool, geometry)
  ct = np.random.default_rng(1).standard_normal(jax.eval_shape(native, x).shape).astype(np.float32)
  (dx,) = pool_agree(lambda f: lambda x, ct: jax.linear_transpose(f, x)(ct), ours, native, x, ct)
  chex.assert_shape(dx, x.shape)
