import os

import hypothesis
import jax

# Careful users run with implicit rank promotion as an error; funconv must never rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")

# The oracle sweep compiles a fresh program per example: deadlines would only measure the compiler.
hypothesis.settings.register_profile("funconv", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("large", deadline=None, max_examples=2000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "funconv"))
