"""Array functions built from lax primitives: convolution and pooling, channels-last, N-d.

Every function takes `(*batch, *spatial, C)` arrays (any number of leading batch axes) and
takes its spatial rank from the window.
"""

from funconv.ops.conv import conv, conv_transpose
from funconv.ops.general import conv_general_dilated
from funconv.ops.pool import adaptive_avg_pool, avg_pool, global_avg_pool, global_max_pool, l2_pool, max_pool, sum_pool
from funconv.ops.shapes import (
  conv_output_shape,
  conv_output_size,
  conv_transpose_output_shape,
  dilate_size,
  resolve_padding,
  transpose_padding,
)

__all__ = [
  "adaptive_avg_pool",
  "avg_pool",
  "conv",
  "conv_general_dilated",
  "conv_output_shape",
  "conv_output_size",
  "conv_transpose",
  "conv_transpose_output_shape",
  "dilate_size",
  "global_avg_pool",
  "global_max_pool",
  "l2_pool",
  "max_pool",
  "resolve_padding",
  "sum_pool",
  "transpose_padding",
]
