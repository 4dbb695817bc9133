"""summary, receptive_field and from_stax."""

import resource

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funconv as fc


def test_summary_counts_parameters_and_macs_without_allocating():
  net = fc.serial(fc.Conv(8, (3, 3)), fc.Relu, fc.Flatten, fc.Dense(10))
  lines = []
  info = fc.summary(net, (28, 28, 1), print_fn=lines.append)
  assert info["params"] == (9 * 8 + 8) + (26 * 26 * 8 * 10 + 10)
  assert info["macs"] == 26 * 26 * 8 * 9 + 26 * 26 * 8 * 10
  assert [(r["name"], r["type"]) for r in info["rows"]] == [
    ("0", "Conv"),
    ("1", "Relu"),
    ("2", "Flatten"),
    ("3", "Dense"),
  ]
  assert info["rows"][0]["output_shape"] == (26, 26, 8)
  assert "total" in lines[0]


def test_summary_of_a_huge_model_allocates_nothing():
  big = fc.serial(*[fc.Conv(512, (3, 3), padding="SAME") for _ in range(8)], fc.Flatten, fc.Dense(4096))
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak resident memory, in KiB
  info = fc.summary(big, (224, 224, 3), print_fn=None)  # ~3.7 G params: 14 GiB if allocated
  assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2**20  # KiB: 1 GiB
  assert info["params"] > 3_000_000_000


def test_receptive_field_matches_the_textbook_recurrence():
  net = fc.serial(
    fc.Conv(4, (3, 3)),
    fc.Conv(4, (3, 3), strides=(2, 2)),
    fc.MaxPool((2, 2), (2, 2)),
    fc.Conv(4, (3, 3), padding="SAME", dilation=(2, 2)),
    fc.GlobalAvgPool,
  )
  rows = fc.receptive_field(net, (64, 64, 3))
  assert [r["size"] for r in rows] == [(3, 3), (5, 5), (7, 7), (23, 23), None]
  assert [r["jump"] for r in rows][:4] == [(1, 1), (2, 2), (4, 4), (4, 4)]
  assert rows[3]["start"] == (3.0, 3.0)  # "SAME" pads the dilated 5-tap window by 2: centred


def test_receptive_field_agrees_with_gradients():
  net = fc.serial(fc.Conv(2, (3, 3)), fc.Conv(2, (3, 3), strides=(2, 2)), fc.Conv(2, (3, 3)))
  size = fc.receptive_field(net, (32, 32, 1))[-1]["size"]
  _, params, state = net.init(jax.random.key(0), (32, 32, 1))
  g = jax.grad(lambda x: net.apply(params, state, x)[0][3, 3, 0])(jnp.ones((32, 32, 1)))
  rows, cols = np.nonzero(np.asarray(g[..., 0]))
  assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == size


def test_from_stax_composes():
  stax = pytest.importorskip("jax.example_libraries.stax")
  net = fc.serial(fc.from_stax(stax.Conv(4, (3, 3), padding="SAME")), fc.Relu, fc.Flatten, fc.Dense(2))
  shape, params, state = net.init(jax.random.key(0), (8, 8, 1))
  assert shape == (2,)
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  batched, _ = fc.batched(net.apply)(params, state, x)
  looped = jnp.stack([net.apply(params, state, e)[0] for e in x])
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-5)
