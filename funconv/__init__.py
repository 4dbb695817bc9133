"""funconv: a functional convolutional-network library for JAX."""
from funconv import ops
