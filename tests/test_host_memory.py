"""`funconv.reuse_host_memory`: compiled calls stop faulting in their scratch buffer once it is set first, it says
so when set late, and it leaves other allocators alone."""

import json
import platform
import statistics
import subprocess
import sys
import textwrap

import pytest

import funconv as fc
from funconv import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
SCRATCH_PAGES = 64 * 256  # the 64 MiB loop carry below, in 4 KiB pages

# A compiled call whose scratch buffer (a 4096 x 4096 float32 loop carry) is larger than any block glibc serves from
# its heap by default; minor page faults counted over each of the last 10 of 20 calls.
FAULTS_PER_CALL = textwrap.dedent(
  """
  import json, resource, sys
  import funconv as fc
  applied = fc.reuse_host_memory() if sys.argv[1] == "reuse" else None
  import jax, jax.numpy as jnp
  from jax import lax
  f = jax.jit(lambda x: lax.fori_loop(0, 2, lambda i, c: jnp.sin(c) + c[::-1], x).sum())
  x = jnp.ones((4096, 4096))
  faults = []
  for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  print(json.dumps({"applied": applied, "faults": faults[-10:]}))
  """
)


def faults_per_call(mode):
  out = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_scratch_memory_is_reused_not_faulted_in_again():
  plain, reused = faults_per_call("plain"), faults_per_call("reuse")
  # The control: by default every call maps its scratch afresh and faults in every page of it.
  assert statistics.median(plain["faults"]) >= SCRATCH_PAGES
  assert reused["applied"] is True
  assert statistics.median(reused["faults"]) < SCRATCH_PAGES / 100


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_late_call_warns_and_returns_false():
  script = textwrap.dedent(
    """
    import warnings
    import jax.numpy as jnp
    import funconv as fc
    jnp.zeros(1).block_until_ready()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      applied = fc.reuse_host_memory()
    print(applied, [str(w.message) for w in caught])
    """
  )
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
  assert out.startswith("False ")
  assert "already started" in out and "before the first JAX computation" in out


def test_without_glibc_nothing_is_set(monkeypatch):
  monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
  monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called without glibc"))
  assert fc.reuse_host_memory() is False
