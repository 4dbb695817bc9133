import os

# Four simulated CPU devices for the data-parallel tests (tests/ops/test_sharding.py); set before
# JAX starts its backends. Single-device code runs on the first, as without the flag. The tests are
# bound by XLA's compiler, and most programs run a few times: LLVM's optimisations off (level 0, not 2)
# halve the compile time of a zoo model's step. They change how fast a program runs, not what it
# computes (XLA:CPU's fast math is off, so LLVM may not reorder floating-point operations).
os.environ["XLA_FLAGS"] = " ".join(
  filter(
    None,
    [
      os.environ.get("XLA_FLAGS"),
      "--xla_force_host_platform_device_count=4",
      "--xla_backend_optimization_level=0",
    ],
  )
)

import hypothesis  # noqa: E402
import jax  # noqa: E402

# Careful users run with implicit rank promotion as an error; funconv must never rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")

# The oracle sweep compiles a fresh program per example: deadlines would only measure the compiler.
hypothesis.settings.register_profile("funconv", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("full", deadline=None, derandomize=True, print_blob=True)  # tests/sweep.py
hypothesis.settings.register_profile("large", deadline=None, max_examples=2000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "funconv"))
