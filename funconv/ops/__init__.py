"""Array functions built from lax primitives: convolution and pooling, channels-last, N-d."""
from funconv.ops.conv import conv, conv_transpose, transpose_padding
from funconv.ops.padding import resolve_padding
from funconv.ops.windows import conv_output_size
