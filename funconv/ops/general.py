"""A drop-in for `jax.lax.conv_general_dilated` built on funconv's explicit convolution."""

import jax
import jax.numpy as jnp
from jax import lax

from funconv.ops.conv import conv_spec
from funconv.ops.padding import pad_spatial
from funconv.ops.primitives import bind, conv_p
from funconv.ops.shapes import as_tuple, check_groups, check_inexact, dilate_size


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
  out_sharding=None,
):
  """`jax.lax.conv_general_dilated`, same signature and semantics, without the native convolution.

  Any `dimension_numbers` (`("NCHW", "OIHW", "NCHW")` by default, as in lax), string or
  explicit padding (negative pads crop), input dilation (interior padding: the transposed
  convolution), kernel dilation, feature groups and batch groups; floating and complex dtypes,
  zero-size axes as in lax. It binds funconv's convolution primitive, so every transformation
  applies. Libraries that accept a convolution callable can use it, e.g.
  `flax.nnx.Conv(..., conv_general_dilated=funconv.ops.conv_general_dilated)`.

  Args:
    lhs: the input, `(N, C_in, *spatial)` under the default dimension numbers; floating or complex.
    rhs: the kernel, `(C_out, C_in // feature_group_count, *window)` under the default ones.
    window_strides: int or one int per spatial axis.
    padding: `"VALID"`, `"SAME"`, `"SAME_LOWER"` (not with `lhs_dilation`), or one `(low, high)`
      pair per spatial axis.
    lhs_dilation: input dilation, int or one per spatial axis (default 1).
    rhs_dilation: kernel dilation, int or one per spatial axis (default 1).
    dimension_numbers: as in lax: None, a `ConvDimensionNumbers` or three layout strings.
    feature_group_count: feature groups (default 1).
    batch_group_count: batch groups (default 1); at most one of the group counts may exceed 1.
    precision: passed to every `lax.dot_general` (default None).
    preferred_element_type: as in lax, the output dtype (a wider one is computed in); default None:
      `jnp.result_type(lhs, rhs)`.
    out_sharding: where given, the result is resharded to it (`jax.sharding.reshard`).

  Returns:
    The output in the layout `dimension_numbers` names (`(N, C_out, *out_spatial)` by default),
    equal to lax's to float rounding.

  Raises:
    TypeError: `lhs` or `rhs` is not floating or complex.
    ValueError: string padding with `lhs_dilation`; both group counts above 1; a group count that
      does not divide the channels, features or batch; wrong numbers of strides or dilations.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> x, w = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))        # NCHW, OIHW
    >>> fc.ops.conv_general_dilated(x, w, (1, 1), "SAME").shape
    (2, 4, 8, 8)
    >>> y = fc.ops.conv_general_dilated(x, w, (1, 1), "SAME")
    >>> bool(jnp.allclose(y, jax.lax.conv_general_dilated(x, w, (1, 1), "SAME")))
    True
  """
  op = "conv_general_dilated"
  lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
  check_inexact(lhs, op, "lhs")
  check_inexact(rhs, op, "rhs")
  dtype = jnp.result_type(lhs, rhs)
  if preferred_element_type is not None and jnp.dtype(preferred_element_type).itemsize > dtype.itemsize:
    dtype = jnp.result_type(dtype, preferred_element_type)  # compute in the wider type
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  rank = lhs.ndim - 2
  x = jnp.transpose(lhs, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])).astype(dtype)
  w = jnp.transpose(rhs, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])).astype(dtype)
  strides = as_tuple(window_strides, rank, "window_strides", op)
  lhs_dilation = as_tuple(lhs_dilation, rank, "lhs_dilation", op)
  rhs_dilation = as_tuple(rhs_dilation, rank, "rhs_dilation", op)
  if isinstance(padding, str):
    if any(d > 1 for d in lhs_dilation):
      raise ValueError(
        f"{op}: string padding {padding!r} is not defined with lhs_dilation={lhs_dilation} "
        "(as in lax); give explicit (low, high) pairs or use funconv.ops.conv_transpose"
      )
    dilated_in = [dilate_size(n, d) for n, d in zip(x.shape[1:-1], lhs_dilation)]
    dilated_window = [dilate_size(k, d) for k, d in zip(w.shape[:-2], rhs_dilation)]
    padding = lax.padtype_to_pads(dilated_in, dilated_window, strides, padding)
  pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
  if any(d > 1 for d in lhs_dilation) or any(p < 0 for pair in pairs for p in pair):
    # Spread or crop first; otherwise the primitive pads each batch chunk itself.
    x, pairs = pad_spatial(x, pairs, interior=[d - 1 for d in lhs_dilation]), ((0, 0),) * rank
  groups = feature_group_count
  if batch_group_count > 1:
    if feature_group_count > 1:
      raise ValueError(
        f"{op}: at most one of feature_group_count ({feature_group_count}) and "
        f"batch_group_count ({batch_group_count}) may exceed 1"
      )
    n = x.shape[0]
    if n % batch_group_count or w.shape[-1] % batch_group_count:
      raise ValueError(
        f"{op}: batch_group_count={batch_group_count} must divide the batch ({n}) and the "
        f"output features ({w.shape[-1]}); lhs.shape={lhs.shape}, rhs.shape={rhs.shape}"
      )
    # Batch group b becomes feature group b: (B * N', ..., C) -> (N', ..., B * C).
    x = x.reshape(batch_group_count, n // batch_group_count, *x.shape[1:])
    x = jnp.moveaxis(x, 0, -2).reshape(*x.shape[1:-1], batch_group_count * x.shape[-1])
    groups = batch_group_count
  check_groups(x.shape[-1], w.shape[-1], groups, op, f" (lhs.shape={lhs.shape}, rhs.shape={rhs.shape})", w.shape[-2])
  y = bind(conv_p, x, w, spec=conv_spec(x, w, strides, rhs_dilation, groups, pairs, precision=precision))
  logical = (0, rank + 1, *range(1, rank + 1))  # y's axis holding each of (batch, feature, spatial...)
  perm = [0] * y.ndim
  for j, axis in enumerate(dn.out_spec):
    perm[axis] = logical[j]
  y = jnp.transpose(y, perm)
  if preferred_element_type is not None:
    y = y.astype(preferred_element_type)
  return y if out_sharding is None else jax.sharding.reshard(y, out_sharding)
