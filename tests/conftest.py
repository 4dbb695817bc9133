import os

import hypothesis

# The oracle sweep compiles a fresh program per example: deadlines would only measure the compiler.
hypothesis.settings.register_profile("funconv", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("large", deadline=None, max_examples=2000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "funconv"))
