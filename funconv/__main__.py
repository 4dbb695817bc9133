"""`python -m funconv`: funconv's convolution beside lax's, on a few shapes, correctness and speed."""
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

import funconv as fc

CASES = [  # (input, kernel, strides, padding, groups)
    ((64, 28, 28, 1), (5, 5, 1, 6), 1, "VALID", 1),
    ((64, 16, 16, 32), (3, 3, 32, 32), 1, "SAME", 1),
    ((64, 16, 16, 32), (3, 3, 1, 32), 1, "SAME", 32),
    ((32, 28, 28, 64), (3, 3, 64, 128), 2, "SAME", 1),
]


def _median_time(f, *args, reps=7):
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  print(f"funconv ops demo on {jax.devices()[0].platform}: forward+backward of sum(conv(x, w)**2)\n")
  print(f"{'input':>18} {'kernel':>14} {'max |diff|':>11} {'native ms':>10} {'funconv ms':>11} {'speed-up':>9}")
  for shape, kernel, stride, padding, groups in CASES:
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), kernel) * 0.1
    ours = lambda x, w: fc.ops.conv(x, w, stride, padding, groups=groups)
    native = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), padding, feature_group_count=groups,
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    diff = float(jnp.max(jnp.abs(ours(x, w) - native(x, w))))
    steps = [jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), (0, 1))) for f in (native, ours)]
    t_native, t_ours = (_median_time(step, x, w) for step in steps)
    print(f"{str(shape):>18} {str(kernel):>14} {diff:11.2e} {1e3 * t_native:10.2f} {1e3 * t_ours:11.2f} "
          f"{t_native / t_ours:8.2f}x")


if __name__ == "__main__":
  main()
