"""The products of one kernel tap: `(rows, C)` positions times a `(C // groups, C_out)` tap, and the
two transposes. Every product accumulates in the plan's `accum` dtype (float32 for 16-bit floats)."""

import jax.numpy as jnp
from jax import lax


def matmul(a, b, plan, contract=((1,), (0,))):
  return lax.dot_general(a, b, (contract, ((), ())), precision=plan.precision, preferred_element_type=plan.accum)


def _einsum(spec, a, b, plan):
  return jnp.einsum(spec, a, b, precision=plan.precision, preferred_element_type=plan.accum)


def _widen(a, plan):
  """`a` in the accumulation dtype, for products that are multiplies rather than GEMMs."""
  return a.astype(plan.accum)


def tap_product(t, wk, plan):
  """`t @ wk` per group: `t` `(rows, C)`, `wk` `(C // groups, C_out)` -> `(rows, C_out)`."""
  rows, channels = t.shape
  groups, c_out = plan.groups, wk.shape[-1]
  if groups == 1 and channels == 1:  # an outer product: a multiply that fuses with the other taps
    return _widen(t, plan) * _widen(wk, plan)
  if groups == 1:
    return matmul(t, wk, plan)
  if wk.shape[0] == 1:  # depthwise: a multiply per channel, no GEMM
    scale = _widen(wk, plan).reshape(1, groups, c_out // groups)
    return (_widen(t, plan)[:, :, None] * scale).reshape(rows, c_out)
  y = _einsum("rgc,cgm->rgm", t.reshape(rows, groups, -1), wk.reshape(-1, groups, c_out // groups), plan)
  return y.reshape(rows, c_out)


def tap_input_grad(g, wk, plan):
  """Transpose of `tap_product` in `t`: `g` `(rows, C_out)` -> `(rows, C)`."""
  rows, c_out = g.shape
  groups = plan.groups
  if groups == 1:
    return matmul(g, wk, plan, ((1,), (1,)))
  g = g.reshape(rows, groups, c_out // groups)
  wk = wk.reshape(-1, groups, c_out // groups)
  if wk.shape[0] == 1:
    return jnp.sum(_widen(g, plan) * _widen(wk, plan), axis=-1)
  return _einsum("rgm,cgm->rgc", g, wk, plan).reshape(rows, -1)


def tap_kernel_grad(t, g, plan):
  """Transpose of `tap_product` in `wk`: `t` `(rows, C)`, `g` `(rows, C_out)` -> `(C // groups, C_out)`."""
  rows, channels = t.shape
  groups, c_out = plan.groups, g.shape[-1]
  if groups == 1:
    return matmul(t, g, plan, ((0,), (0,)))
  g = g.reshape(rows, groups, c_out // groups)
  if channels == groups:
    return jnp.sum(_widen(t, plan)[:, :, None] * _widen(g, plan), axis=0).reshape(1, c_out)
  dw = _einsum("rgc,rgm->cgm", t.reshape(rows, groups, -1), g, plan)
  return dw.reshape(-1, c_out)


def batched_matmul(a, b, plan, contract=((2,), (1,))):
  """One GEMM per index of the shared leading axis: `(B, r, k) @ (B, k, c)` (or as `contract` says)."""
  return lax.dot_general(a, b, (contract, ((0,), (0,))), precision=plan.precision, preferred_element_type=plan.accum)
