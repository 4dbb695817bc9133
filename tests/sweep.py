"""How many examples a property test draws. The default run (which must finish in minutes on 2 cores, each example
compiling programs of its own) draws a fifth of a sweep's full count, at least 5, always the same ones
(`derandomize`); `HYPOTHESIS_PROFILE=full` draws the full counts and `HYPOTHESIS_PROFILE=large` 2,000 each."""

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "funconv")


def examples(full):
  """The `hypothesis.settings` of a sweep whose full count is `full`."""
  if PROFILE == "large":
    return settings(deadline=None)  # the profile's own count
  return settings(max_examples=full if PROFILE == "full" else max(5, full // 5), deadline=None)
