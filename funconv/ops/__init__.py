"""Array functions built from lax primitives: convolution and pooling, channels-last, N-d.

Every function takes `(*batch, *spatial, C)` arrays (any number of leading batch axes) and
takes its spatial rank from the window.
"""
from funconv.ops.conv import conv, conv_transpose, transpose_padding
from funconv.ops.general import conv_general_dilated
from funconv.ops.padding import conv_output_shape, resolve_padding
from funconv.ops.pool import adaptive_avg_pool, avg_pool, global_avg_pool, global_max_pool, l2_pool, max_pool, sum_pool
from funconv.ops.windows import conv_output_size, dilate_size
