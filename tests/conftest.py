import os

# Four simulated CPU devices for the data-parallel tests (tests/ops/test_sharding.py); set before
# JAX starts its backends. Single-device code runs on the first, as without the flag.
os.environ["XLA_FLAGS"] = " ".join(
  filter(None, [os.environ.get("XLA_FLAGS"), "--xla_force_host_platform_device_count=4"])
)

import hypothesis  # noqa: E402
import jax  # noqa: E402

# Careful users run with implicit rank promotion as an error; funconv must never rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")

# The oracle sweep compiles a fresh program per example: deadlines would only measure the compiler.
hypothesis.settings.register_profile("funconv", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("large", deadline=None, max_examples=2000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "funconv"))
