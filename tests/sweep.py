"""How many examples a property test draws. The default run (which must finish in minutes on 2 cores, each example
compiling programs of its own) draws a fifth of a sweep's full count, at least 5, or the count it names, always the
same ones (`derandomize`); `HYPOTHESIS_PROFILE=full` draws the full counts and `HYPOTHESIS_PROFILE=large` 2,000."""

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "funconv")


def examples(full, default=None):
  """The `hypothesis.settings` of a sweep whose full count is `full` (`default` in the default run, if given)."""
  if PROFILE == "large":
    return settings(deadline=None)  # the profile's own count
  if PROFILE == "full":
    return settings(max_examples=full, deadline=None)
  return settings(max_examples=max(5, full // 5) if default is None else default, deadline=None)
