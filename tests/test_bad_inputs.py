"""Bad input, systematically: every public constructor, op, `init`/`apply`, combinator, model builder, data
reader and CLI flag, called with invalid arguments, raises a ValueError or TypeError (a FileNotFoundError for a
missing file, a usage error for a CLI flag) whose message names the function or layer (by its path in the model,
as `summary` shows it), the argument and the offending value or shape. Never an XLA error, a Python internal
error, a silent broadcast or a wrong result. Each case goes through `rejects`, which counts it; the last test
prints the count.
"""

import contextlib
import gzip
import io
import math
import pathlib
import pickle
import struct
import tarfile
import tempfile

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings

import funconv as fc
from funconv import data, models
from funconv.models.resnet import basic_block
from funconv.train.__main__ import run as cli

CASES = [0]
KEY = jax.random.key(0)


def rejects(call, *names, error=(ValueError, TypeError)):
  """`call()` raises exactly `error` (not a subclass from deep inside JAX or NumPy), and its message contains every
  one of `names` (the function or layer, the argument, the offending value or shape)."""
  CASES[0] += 1
  errors = error if isinstance(error, tuple) else (error,)
  with pytest.raises(errors) as info:
    call()
  assert type(info.value) in errors, f"{type(info.value).__name__}: {info.value}"
  message = str(info.value)
  for name in names:
    assert str(name) in message, f"{name!r} is not in the message {message!r}"
  return message


def often(n):
  return settings(max_examples=n, deadline=None)


# Values that are not a count (an int >= 1): too small, not an int, not a number.
bad_counts = st.one_of(
  st.integers(-(10**6), 0),
  st.floats(allow_nan=True, allow_infinity=True),
  st.sampled_from(["8", b"8", None, True, False, 2j, object()]),
)
bad_dtypes = st.sampled_from([jnp.int32, jnp.int8, jnp.uint8, jnp.bool_, np.int64, "int16", "float33", object, 3])

# name: (constructor, arguments that build it, the window arguments it takes, its count arguments)
LAYERS = {
  "Conv": (
    fc.Conv,
    dict(out_chan=4, filter_shape=(3, 3)),
    ("filter_shape", "strides", "dilation"),
    ("out_chan", "groups"),
  ),
  "ConvTranspose": (
    fc.ConvTranspose,
    dict(out_chan=4, filter_shape=(3, 3)),
    ("filter_shape", "strides", "dilation"),
    ("out_chan",),
  ),
  "DepthwiseConv": (
    fc.DepthwiseConv,
    dict(filter_shape=(3, 3)),
    ("filter_shape", "strides", "dilation"),
    ("depth_multiplier",),
  ),
  "SeparableConv": (
    fc.SeparableConv,
    dict(out_chan=4, filter_shape=(3, 3)),
    ("filter_shape", "strides", "dilation"),
    ("out_chan", "depth_multiplier"),
  ),
  **{
    name: (getattr(fc, name), dict(window_shape=(2, 2)), ("window_shape", "strides"), ())
    for name in ("MaxPool", "AvgPool", "SumPool", "L2Pool")
  },
  "AdaptiveAvgPool": (fc.AdaptiveAvgPool, dict(output_size=(2, 2)), ("output_size",), ()),
  "Dense": (fc.Dense, dict(out_dim=4), (), ("out_dim",)),
  "GroupNorm": (fc.GroupNorm, dict(num_groups=2), (), ("num_groups",)),
  "FanOut": (fc.FanOut, dict(num=2), (), ("num",)),
}
# (layer, number argument, lowest, highest)
NUMBERS = [
  ("Dropout", "rate", 0, 1),
  ("BatchNorm", "momentum", 0, 1),
  ("BatchNorm", "epsilon", 0, math.inf),
  ("LayerNorm", "epsilon", 0, math.inf),
  ("GroupNorm", "epsilon", 0, math.inf),
]
WITH_DTYPES = [
  "Dense",
  "Conv",
  "ConvTranspose",
  "DepthwiseConv",
  "SeparableConv",
  "BatchNorm",
  "LayerNorm",
  "GroupNorm",
]


def build(name, **arguments):
  if name in LAYERS:
    make, defaults = LAYERS[name][:2]
    return make(**{**defaults, **arguments})
  return getattr(fc, name)(**arguments)


@st.composite
def bad_window_argument(draw):
  """`(layer, argument, value, what the message must show)`: a window argument that is no int >= 1 nor one per
  spatial axis: a bad scalar, a pair with one bad entry, or (for those after the first) the wrong number."""
  name = draw(st.sampled_from([n for n in LAYERS if LAYERS[n][2]]))
  argument = draw(st.sampled_from(LAYERS[name][2]))
  kind = draw(st.sampled_from(["scalar", "entry", "length"] if argument != LAYERS[name][2][0] else ["scalar", "entry"]))
  bad = draw(bad_counts.filter(lambda v: v is not None))
  if kind == "scalar":
    return name, argument, bad, repr(bad)
  if kind == "entry":
    i = draw(st.integers(0, 1))
    value = (2, bad) if i else (bad, 2)
    return name, argument, value, f"{argument}[{i}]"
  value = draw(st.sampled_from([(1,), (1, 1, 1), ()]))
  return name, argument, value, repr(value)


@often(300)
@given(bad_window_argument())
def test_window_arguments_must_be_positive_ints_one_per_axis(case):
  name, argument, value, shown = case
  rejects(lambda: build(name, **{argument: value}), name, argument, shown)


@often(200)
@given(st.sampled_from([(n, a) for n in LAYERS for a in LAYERS[n][3]]), bad_counts)
def test_counts_must_be_positive_ints(layer_argument, value):
  name, argument = layer_argument
  rejects(lambda: build(name, **{argument: value}), name, argument, repr(value))


@often(150)
@given(st.sampled_from(NUMBERS), st.data())
def test_rates_and_epsilons_must_be_numbers_in_range(case, draw):
  name, argument, low, high = case
  value = draw.draw(
    st.one_of(
      st.floats(allow_nan=True).filter(lambda v: not (low <= v <= high and math.isfinite(v))),
      st.sampled_from(["0.5", None, True, [0.5], 1j]),
    )
  )
  rejects(lambda: build(name, **{argument: value}), name, argument, repr(value))


@often(100)
@given(st.sampled_from(WITH_DTYPES), st.sampled_from(["dtype", "param_dtype"]), bad_dtypes)
def test_dtypes_must_be_floating(name, argument, dtype):
  rejects(lambda: build(name, **{argument: dtype}), name, argument, repr(dtype))


@often(60)
@given(
  st.sampled_from(["Conv", "DepthwiseConv", "MaxPool", "AvgPool", "SumPool", "L2Pool", "ConvTranspose"]),
  st.one_of(
    st.text(max_size=8).filter(
      lambda s: s.upper() not in ("SAME", "SAME_LOWER", "VALID", "CAUSAL", "CIRCULAR", "REFLECT")
    ),
    st.sampled_from([1.5, ((1, 1),), ((1, 1), (1, 1), (1, 1)), ((1.5, 1), (1, 1)), [[1, 2, 3]], None]),
  ),
)
def test_unknown_padding_is_named_at_init(name, padding):
  shown = "padding" if name == "ConvTranspose" and not isinstance(padding, str) else repr(padding)
  rejects(lambda: build(name, padding=padding).init(KEY, (6, 6, 2)), name, "padding", shown)


@often(150)
@given(
  st.sampled_from(
    ["Conv", "ConvTranspose", "DepthwiseConv", "MaxPool", "AvgPool", "SumPool", "L2Pool", "AdaptiveAvgPool"]
  ),
  st.lists(st.integers(1, 6), max_size=5).filter(lambda s: len(s) != 3),
)
def test_inputs_of_the_wrong_rank(name, shape):
  rejects(lambda: build(name).init(KEY, tuple(shape)), name, "input_shape", tuple(shape))


@often(150)
@given(
  st.sampled_from(
    ["Conv", "Dense", "BatchNorm", "LayerNorm", "MaxPool", "Flatten", "Relu", "Dropout", "GlobalAvgPool", "Reshape"]
  ),
  st.one_of(
    st.integers(),
    st.floats(),
    st.just(None),
    st.lists(st.one_of(st.integers(-9, -1), st.floats(), st.text(max_size=1)), min_size=1, max_size=3).map(
      lambda s: (*s, 3)
    ),
  ),
)
def test_input_shapes_must_be_tuples_of_sizes(name, shape):
  layer = {
    "Flatten": fc.Flatten,
    "Relu": fc.Relu,
    "GlobalAvgPool": fc.GlobalAvgPool,
    "Dropout": fc.Dropout(0.5),
    "Reshape": fc.Reshape((-1,)),
  }.get(name) or build(name)
  rejects(lambda: layer.init(KEY, shape), name, "input_shape", repr(shape))


@often(100)
@given(st.integers(1, 7), st.integers(0, 3), st.integers(1, 3), st.sampled_from(["Conv", "MaxPool", "DepthwiseConv"]))
def test_windows_larger_than_the_padded_input(size, pad, dilation, name):
  window = size + 2 * pad + 1
  arguments = dict(filter_shape=window, dilation=dilation) if name != "MaxPool" else dict(window_shape=window)
  rejects(
    lambda: build(name, padding=pad, **arguments).init(KEY, (size, size, 2)),
    name,
    "larger than the padded input",
    f"({window}, {window})",
    f"{(size + 2 * pad,) * 2}",
  )


@often(60)
@given(st.integers(2, 6), st.integers(1, 12), st.integers(1, 12))
def test_groups_must_divide_the_channels(groups, channels, out_chan):
  if channels % groups == 0 and out_chan % groups == 0:
    channels += 1
  rejects(
    lambda: fc.Conv(out_chan, 3, groups=groups).init(KEY, (5, 5, channels)), "Conv", f"groups={groups}", f"({channels})"
  )


@often(40)
@given(st.integers(2, 8), st.integers(1, 30).filter(lambda c: c % 8))
def test_groupnorm_groups_must_divide_the_channels(groups, channels):
  channels = channels if channels % groups else channels + 1
  rejects(lambda: fc.GroupNorm(groups).init(KEY, (4, 4, channels)), "GroupNorm", f"num_groups={groups}", channels)


@often(40)
@given(
  st.sampled_from(
    [
      ([0, 3], "shape[0]=0"),
      ([-2, 4], "shape[0]=-2"),
      ([2, -1, -1], "[2, -1, -1]"),
      ([2.0, 3], "2.0"),
      ([3, None], "None"),
      ("3x3", "'3x3'"),
      (5, "5"),
    ]
  )
)
def test_reshape_targets(case):
  shape, shown = case
  rejects(lambda: fc.Reshape(shape), "Reshape:", "shape", shown)


# A model with every kind of container, for the params and state tests.
NET = fc.serial(
  fc.Conv(4, 3, padding="SAME"),
  fc.BatchNorm(),
  fc.Relu,
  fc.residual(fc.serial(fc.Conv(4, 3, padding="SAME"), fc.LayerNorm()), fc.Dense(4)),
  fc.MaxPool(2, strides=2),
  fc.Flatten,
  fc.Dropout(0.5),
  fc.Dense(5),
)
IN = (6, 6, 2)
_, PARAMS, STATE = NET.init(KEY, IN)
X = jnp.ones(IN)
ROWS = fc.summary(NET, IN, print_fn=None)["rows"]
# Each leaf layer's place in the params tree (its row's index: (3, 1, 0, 0) is params[3][1][0][0]), and how errors
# name it: "3/branches/main/0 (Conv)".
PLACES = {row["index"]: f"{row['name']} ({row['type']})" for row in ROWS}
CONTAINERS = sorted({place[:i] for place in PLACES for i in range(len(place))})
# A container's path: the first levels of the path of a layer inside it.
CONTAINER_PATHS = {
  place: "/".join(row["name"].split("/")[: len(place)])
  for row in ROWS
  for place in CONTAINERS
  if row["index"][: len(place)] == place
}


def trace_apply(params=PARAMS, state=STATE, x=X, **kwargs):
  """`NET.apply` traced, not run: every check happens at trace time."""
  return jax.eval_shape(lambda: NET.apply(params, state, x, **kwargs))


def replace(tree, place, value):
  if not place:
    return value
  return tuple(replace(t, place[1:], value) if i == place[0] else t for i, t in enumerate(tree))


def get(tree, place):
  return tree if not place else get(tree[place[0]], place[1:])


@often(150)
@given(st.sampled_from(["params", "state"]), st.data())
def test_a_leaf_with_the_wrong_shape_names_its_layer(what, draw):
  tree = PARAMS if what == "params" else STATE
  places = [p for p in PLACES if jax.tree.leaves(get(tree, p))]
  place = draw.draw(st.sampled_from(places))
  leaves, treedef = jax.tree.flatten(get(tree, place))
  i = draw.draw(st.integers(0, len(leaves) - 1))
  shape = list(leaves[i].shape)
  if draw.draw(st.booleans()):  # an extra axis
    axis = draw.draw(st.integers(0, len(shape)))
    shape = shape[:axis] + [draw.draw(st.integers(2, 5))] + shape[axis:]
  else:  # a longer axis
    axis = draw.draw(st.integers(0, len(shape) - 1))
    shape[axis] += draw.draw(st.integers(1, 3))
  leaves[i] = jnp.zeros(shape)
  corrupted = replace(tree, place, jax.tree.unflatten(treedef, leaves))
  arguments = dict(params=corrupted) if what == "params" else dict(state=corrupted)
  rejects(lambda: trace_apply(**arguments), PLACES[place] + ":", what, tuple(shape), error=ValueError)


@often(150)
@given(
  st.sampled_from(["params", "state"]),
  st.sampled_from(sorted(PLACES)),
  st.sampled_from(["drop", "extra", "dict", "array", "none"]),
)
def test_a_leaf_with_the_wrong_structure_names_its_layer(what, place, kind):
  tree = PARAMS if what == "params" else STATE
  sub = get(tree, place)
  new = {
    "drop": sub[:-1] if sub else (jnp.zeros(3),),
    "extra": (*sub, jnp.zeros(2)),
    "dict": {f"w{i}": v for i, v in enumerate(sub)} or {"w": jnp.zeros(1)},
    "array": jnp.zeros(3),
    "none": None if sub else (jnp.zeros(1),),
  }[kind]
  arguments = dict(params=replace(tree, place, new)) if what == "params" else dict(state=replace(tree, place, new))
  rejects(lambda: trace_apply(**arguments), PLACES[place] + ":", what, "structure", error=ValueError)


@often(150)
@given(
  st.sampled_from(["params", "state"]),
  st.sampled_from(CONTAINERS),
  st.sampled_from(["shorter", "longer", "array", "dict"]),
)
def test_a_container_with_the_wrong_number_of_entries_names_itself(what, place, kind):
  tree = PARAMS if what == "params" else STATE
  sub = get(tree, place)
  new = {"shorter": sub[:-1], "longer": (*sub, ()), "array": jnp.zeros(len(sub)), "dict": dict(enumerate(sub))}[kind]
  arguments = dict(params=replace(tree, place, new)) if what == "params" else dict(state=replace(tree, place, new))
  path = CONTAINER_PATHS[place]
  rejects(
    lambda: trace_apply(**arguments), f"{path} (" if path else "serial:", what, f"tuple of {len(sub)}", error=ValueError
  )


OTHER_MODELS = [
  fc.serial(fc.Conv(4, 3, padding="SAME"), fc.BatchNorm(), fc.Relu, fc.MaxPool(2, strides=2), fc.Flatten, fc.Dense(5)),
  fc.serial(
    fc.Conv(8, 3, padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.residual(fc.serial(fc.Conv(8, 3, padding="SAME"), fc.LayerNorm()), fc.Dense(8)),
    fc.MaxPool(2, strides=2),
    fc.Flatten,
    fc.Dropout(0.5),
    fc.Dense(5),
  ),
  fc.serial(
    fc.Conv(4, 3),
    fc.BatchNorm(),
    fc.Relu,
    fc.residual(fc.serial(fc.Conv(4, 3, padding="SAME"), fc.LayerNorm()), fc.Dense(4)),
    fc.MaxPool(2, strides=2),
    fc.Flatten,
    fc.Dropout(0.5),
    fc.Dense(5),
  ),
  fc.serial(
    fc.Conv(4, 3, padding="SAME"),
    fc.BatchNorm(),
    fc.Relu,
    fc.residual(fc.serial(fc.Conv(4, 3, padding="SAME"), fc.LayerNorm()), fc.Dense(4)),
    fc.MaxPool(2, strides=2),
    fc.Flatten,
    fc.Dropout(0.5),
    fc.Dense(7),
  ),
  models.small_cnn(5, width=4),
]


@often(40)
@given(st.sampled_from(range(len(OTHER_MODELS))), st.sampled_from([(6, 6, 2), (6, 6, 3), (4, 4, 2), (8, 8, 2)]))
def test_params_of_another_model_never_run(model, shape):
  """A shorter model's params skip no layer, a wider one's run no other model: each names where they differ."""
  _, params, state = OTHER_MODELS[model].init(KEY, shape)
  assume(jax.tree.map(jnp.shape, (params, state)) != jax.tree.map(jnp.shape, (PARAMS, STATE)))  # else the same model
  message = rejects(lambda: trace_apply(params, state), error=ValueError)
  assert message.startswith(
    (
      "serial:",
      *(f"{layer}:" for layer in PLACES.values()),
      *(f"{path} (" for path in CONTAINER_PATHS.values() if path),
    )
  ), message


@often(60)
@given(st.sampled_from([(6, 6), (6, 6, 3), (6, 6, 2, 1), (2, 6, 6, 2), (), (6, 2), (6, 6, 1)]))
def test_inputs_that_do_not_fit_the_params(shape):
  rejects(lambda: trace_apply(x=jnp.ones(shape)), "0 (Conv):", repr(shape))


@often(40)
@given(st.sampled_from([jnp.int32, jnp.int8, jnp.uint8, jnp.bool_]))
def test_integer_inputs(dtype):
  rejects(lambda: trace_apply(x=jnp.ones(IN, dtype)), "0 (Conv):", "x", jnp.dtype(dtype).name, error=TypeError)


def test_dropout_in_training_needs_a_key_and_batchnorm_a_batch():
  rejects(lambda: fc.batched(NET.apply)(PARAMS, STATE, jnp.ones((2, *IN)), train=True), "6 (Dropout):", "key")
  rejects(lambda: trace_apply(key=KEY, train=True), "1 (BatchNorm):", "axis named 'batch'")
  rejects(lambda: fc.Dropout(0.5).apply((), (), X, train=True), "Dropout:", "key")


OPS_X, OPS_W = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 4, 8))
OPS = {
  "conv": (lambda **kw: fc.ops.conv(kw.pop("x", OPS_X), kw.pop("w", OPS_W), **kw), ("strides", "dilation")),
  "conv_transpose": (
    lambda **kw: fc.ops.conv_transpose(kw.pop("x", OPS_X), kw.pop("w", OPS_W), **kw),
    ("strides", "dilation"),
  ),
  **{
    name: (
      lambda name=name, **kw: getattr(fc.ops, name)(kw.pop("x", OPS_X), kw.pop("window_shape", (2, 2)), **kw),
      ("window_shape", "strides"),
    )
    for name in ("max_pool", "avg_pool", "sum_pool", "l2_pool")
  },
}


@often(200)
@given(st.sampled_from(sorted(OPS)), st.data())
def test_op_window_arguments(name, draw):
  call, arguments = OPS[name]
  argument = draw.draw(st.sampled_from(arguments))
  bad = draw.draw(bad_counts.filter(lambda v: v is not None))
  i = draw.draw(st.integers(0, 1))
  value = draw.draw(st.sampled_from([bad, (2, bad) if i else (bad, 2)]))
  rejects(lambda: call(**{argument: value}), f"{name}:", argument, repr(bad) if value is bad else f"{argument}[{i}]")


@often(100)
@given(
  st.sampled_from(sorted(OPS)),
  st.sampled_from([jnp.int32, jnp.int8, jnp.uint8, jnp.bool_]),
  st.sampled_from(["x", "w"]),
)
def test_ops_need_floating_inputs(name, dtype, argument):
  if argument == "w" and name not in ("conv", "conv_transpose"):
    argument = "x"
  value = jnp.ones((OPS_X if argument == "x" else OPS_W).shape, dtype)
  rejects(lambda: OPS[name][0](**{argument: value}), f"{name}:", argument, jnp.dtype(dtype).name, error=TypeError)


@often(80)
@given(st.sampled_from(sorted(OPS)), st.sampled_from([(6, 4), (4,), (), (6, 6)]))
def test_ops_need_spatial_axes(name, shape):
  rejects(lambda: OPS[name][0](x=jnp.ones(shape)), f"{name}:", "x", f"{shape}")


@often(80)
@given(
  st.sampled_from(["conv", "max_pool", "avg_pool"]),
  st.text(max_size=6).filter(
    lambda s: s.upper() not in ("SAME", "SAME_LOWER", "VALID", "CAUSAL", "CIRCULAR", "REFLECT")
  ),
)
def test_op_padding(name, padding):
  rejects(lambda: OPS[name][0](padding=padding), f"{name}:", "padding", repr(padding))


@often(60)
@given(st.one_of(bad_counts, st.integers(2, 5)), st.integers(1, 6))
def test_conv_groups(groups, channels):
  w = jnp.ones((3, 3, max(channels // 2, 1), 6))
  if (
    isinstance(groups, int)
    and not isinstance(groups, bool)
    and groups > 0
    and channels == groups * w.shape[-2]
    and 6 % groups == 0
  ):
    groups += 1
  rejects(lambda: fc.ops.conv(jnp.ones((6, 6, channels)), w, groups=groups), "conv:", "groups")


@often(60)
@given(st.integers(1, 5), st.integers(0, 2), st.sampled_from(["conv", "max_pool", "sum_pool"]))
def test_op_windows_larger_than_the_padded_input(size, pad, name):
  window = size + 2 * pad + 1
  x = jnp.ones((size, size, 4))
  call = (
    (lambda: fc.ops.conv(x, jnp.ones((window, window, 4, 2)), padding=pad))
    if name == "conv"
    else (lambda: getattr(fc.ops, name)(x, (window, window), padding=pad))
  )
  rejects(call, f"{name}:", "larger than the padded input", f"({window}, {window})")


@often(60)
@given(st.sampled_from(["global_avg_pool", "global_max_pool", "adaptive_avg_pool"]), st.data())
def test_global_and_adaptive_pools(name, draw):
  kind = draw.draw(st.sampled_from(["dtype", "rank", "argument"]))
  op = getattr(fc.ops, name)
  argument, given_ = ("output_size", ((2, 2),)) if name == "adaptive_avg_pool" else ("rank", ())
  if kind == "dtype":
    rejects(lambda: op(jnp.ones((2, 4, 4, 3), jnp.int32), *given_), f"{name}:", "x", "int32", error=TypeError)
  elif kind == "rank":
    rejects(lambda: op(jnp.ones((4, 3)), *given_), f"{name}:", "x", "(4, 3)")
  else:
    bad = draw.draw(bad_counts.filter(lambda v: v is not None))
    rejects(lambda: op(jnp.ones((2, 4, 4, 3)), bad), f"{name}:", argument, repr(bad))


def test_shape_rules():
  rejects(lambda: fc.ops.conv_output_size(28, 5, 0), "conv_output_size", "stride", "0")
  rejects(lambda: fc.ops.conv_output_size(28, 5, 1, (0, 0), -1), "conv_output_size", "dilation", "-1")
  rejects(lambda: fc.ops.conv_output_shape((28, -1), (3, 3)), "conv_output_shape", "in_shape", "(28, -1)")
  rejects(lambda: fc.ops.conv_output_shape((28, 28), (3, 0)), "conv_output_shape", "window[1]", "0")
  rejects(lambda: fc.ops.conv_output_shape((28, 28, 28), (3, 3)), "conv_output_shape", "in_shape", "(28, 28, 28)")
  rejects(lambda: fc.ops.conv_output_shape((28, 28), (3, 3), strides=(2, 2, 2)), "conv_output_shape", "strides")
  rejects(lambda: fc.ops.resolve_padding("HALF", (8,), (3,), (1,), (1,), "op"), "op:", "'HALF'")
  rejects(lambda: fc.ops.transpose_padding((3,), (1,), (1,), "CIRCULAR"), "conv_transpose:", "'CIRCULAR'")
  rejects(lambda: fc.ops.conv(OPS_X, OPS_W, algorithm="fft"), "conv:", "algorithm", "'fft'")
  rejects(lambda: fc.ops.conv(OPS_X, jnp.ones((3, 8))), "conv:", "w", "(3, 8)")
  rejects(lambda: fc.ops.conv_transpose(OPS_X, jnp.ones((3, 3, 5, 8))), "conv_transpose:", "channels", "(3, 3, 5, 8)")


NOT_LAYERS = [fc.Conv, fc.Dense, (lambda k, s: s, lambda p, s, x: x), 3, None, "Relu", jnp.ones(2)]


@often(100)
@given(st.sampled_from(["serial", "parallel"]), st.sampled_from(NOT_LAYERS), st.integers(0, 3))
def test_combinators_take_layers(name, bad, position):
  layers = [fc.Relu] * 3
  layers.insert(position, bad)
  rejects(lambda: getattr(fc, name)(*layers), f"{name}:", f"layers[{position}]", "Layer")


@often(40)
@given(
  st.sampled_from(NOT_LAYERS), st.sampled_from(["main", "shortcut", "summary", "receptive_field", "shape_dependent"])
)
def test_every_layer_argument_is_checked(bad, where):
  call = {
    "main": lambda: fc.residual(bad),
    "shortcut": lambda: fc.residual(fc.Relu, bad),
    "summary": lambda: fc.summary(bad, (4,)),
    "receptive_field": lambda: fc.receptive_field(bad, (4,)),
    "shape_dependent": lambda: fc.shape_dependent(lambda s: bad).init(KEY, (4,)),
  }[where]
  rejects(call, "residual" if where in ("main", "shortcut") else where, "Layer", error=TypeError)


@often(60)
@given(st.sampled_from([1, 3, 4]), st.sampled_from(["init", "apply"]))
def test_parallel_needs_one_input_per_layer(n, stage):
  net = fc.parallel(fc.Relu, fc.Tanh)
  if stage == "init":
    rejects(lambda: net.init(KEY, [(3,)] * n), "parallel:", "input_shape", "tuple of 2")
  else:
    rejects(lambda: net.apply(((),) * 2, ((),) * 2, [jnp.ones(3)] * n), "parallel:", "x", "tuple of 2")


@often(80)
@given(st.one_of(st.sampled_from([1.0, "1", None, True]), st.integers(-10, 10)), st.integers(0, 3))
def test_fan_ins(axis, rank):
  shapes = [(3,) * rank, (3,) * rank]
  if isinstance(axis, int) and not isinstance(axis, bool) and -rank <= axis < rank:
    shapes[1] = (4,) * rank if rank else (3,)
    rejects(
      lambda: fc.FanInConcat(axis).init(KEY, shapes) if rank > 1 else fc.FanInSum.init(KEY, shapes),
      "FanInConcat:" if rank > 1 else "FanInSum:",
      f"{shapes}",
    )
  else:
    rejects(lambda: fc.FanInConcat(axis).init(KEY, shapes), "FanInConcat:", "axis", repr(axis))


def test_fan_ins_check_their_inputs_at_apply():
  rejects(lambda: fc.FanInSum.apply((), (), [jnp.ones(3), jnp.ones(1)]), "FanInSum:", "[(3,), (1,)]")
  rejects(lambda: fc.FanInSum.apply((), (), jnp.ones((2, 3))), "FanInSum:", "list of inputs", "(2, 3)")
  rejects(lambda: fc.FanInConcat(0).apply((), (), [jnp.ones((2, 3)), jnp.ones((2, 4))]), "FanInConcat:", "(2, 4)")
  rejects(lambda: fc.FanOut(2).apply((jnp.ones(3),), (), jnp.ones(3)), "FanOut:", "params", "structure")
  rejects(lambda: fc.shape_dependent(3), "shape_dependent", "make_layer", "3", error=TypeError)
  rejects(lambda: fc.from_stax((1, 2)), "from_stax", "stax_layer", "(1, 2)", error=TypeError)
  rejects(lambda: fc.elementwise("relu"), "elementwise", "fn", "'relu'", error=TypeError)


BUILDERS = {  # builder: {argument: bad values}, and the name its messages use
  "lenet5": (models.lenet5, "lenet5", dict(activation=["sigmoid", "TANH", None, 3], pooling=["min", "", None])),
  "alexnet": (models.alexnet, "alexnet", dict(dropout=[-0.1, 1.5, "0.5", None, math.nan])),
  "vgg11": (lambda **kw: models.vgg((64, "M"), **kw), "vgg", dict(dropout=[2.0, -1.0], classifier_width=[0, -4, 2.5])),
  "vgg": (lambda config: models.vgg(config), "vgg", dict(config=[(64, "N"), (0, "M"), (64, -1), "64M", 64])),
  "resnet18": (models.resnet18, "resnet", {}),
  "cifar_resnet": (lambda depth: models.cifar_resnet(depth), "cifar_resnet", dict(depth=[2, 21, -4, 0, 19, 3.0, "20"])),
  "resnet": (
    lambda stage_sizes: models.resnet(basic_block, stage_sizes),
    "resnet",
    dict(stage_sizes=[(2, 0), (2, -1), 2, "22"]),
  ),
  "small_cnn": (models.small_cnn, "small_cnn", dict(width=[0, -1, 1.5], dropout=[1.01])),
  "mobilenet_v1": (models.mobilenet_v1, "mobilenet_v1", dict(width_multiplier=[0, -1.0, "1", math.inf, None])),
}


@often(150)
@given(st.sampled_from(sorted(BUILDERS)), st.data())
def test_model_builders(builder, draw):
  make, name, bad = BUILDERS[builder]
  arguments = [*bad] + ([] if builder in ("vgg", "cifar_resnet", "resnet") else ["num_classes"])
  argument = draw.draw(st.sampled_from(arguments))
  value = draw.draw(st.sampled_from(bad[argument]) if argument in bad else bad_counts)
  rejects(lambda: make(**{argument: value}), name, argument)


@often(40)
@given(st.sampled_from([("alexnet", 62), ("vgg11", 31), ("small_cnn", 1)]), st.data())
def test_models_on_inputs_too_small(model_size, draw):
  name, largest = model_size
  size = draw.draw(st.integers(1, largest))
  model = getattr(models, name)(num_classes=10)
  message = rejects(lambda: fc.summary(model, (size, size, 3), print_fn=None), "input")
  assert message.split(":")[0].split(" (")[-1] in ("Conv)", "MaxPool)"), message


IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def idx_bytes(array):
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(np.uint8).tobytes()


def mnist_files(train=4, test=3):
  rng = np.random.default_rng(0)
  return [
    rng.integers(0, 256, (train, 28, 28)),
    rng.integers(0, 10, train),
    rng.integers(0, 256, (test, 28, 28)),
    rng.integers(0, 10, test),
  ]


@often(120)
@given(
  st.sampled_from(["missing", "truncated", "mislabelled", "miscounted", "swapped"]),
  st.booleans(),
  st.integers(0, 3),
  st.integers(0, 10**6),
)
def test_mnist_directory_with_bad_files(kind, compress, which, cut):
  arrays = mnist_files()
  if kind == "mislabelled":
    arrays[which | 1] = np.concatenate([[10 + cut % 200], arrays[which | 1][1:]])
  if kind == "miscounted":
    arrays[which | 1] = arrays[which | 1][:-1]
  if kind == "swapped":
    arrays[which & 2], arrays[(which & 2) + 1] = arrays[(which & 2) + 1], arrays[which & 2]
  with tempfile.TemporaryDirectory() as directory:
    paths = [pathlib.Path(directory) / (base + (".gz" if compress else "")) for base in IDX]
    for path, array in zip(paths, arrays):
      raw = idx_bytes(array)
      path.write_bytes(gzip.compress(raw) if compress else raw)
    if kind == "missing":
      paths[which].unlink()
      rejects(lambda: data.load("mnist", directory), "mnist", IDX[which], error=FileNotFoundError)
      return
    if kind == "truncated":
      raw = paths[which].read_bytes()
      paths[which].write_bytes(raw[: cut % len(raw)])
    shown = paths[{"truncated": which, "swapped": which & 2}.get(kind, which | 1)].name
    rejects(
      lambda: data.load("mnist", directory), "mnist" if kind != "truncated" else "read_idx", shown, error=ValueError
    )


def cifar_batch(n, labels, rows=3072, key=b"labels"):
  rng = np.random.default_rng(n)
  return pickle.dumps({b"data": rng.integers(0, 256, (n, rows), dtype=np.uint8), key: labels})


@often(100)
@given(
  st.sampled_from(["truncated", "mislabelled", "miscounted", "wrong key", "wrong rows", "archive"]),
  st.integers(0, 5),
  st.integers(0, 10**6),
)
def test_cifar_directory_with_bad_files(kind, which, cut):
  names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  with tempfile.TemporaryDirectory() as directory:
    folder = pathlib.Path(directory) / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate(names):
      labels = [1, 2] if i != which else {"mislabelled": [1, 10], "miscounted": [1]}.get(kind, [1, 2])
      (folder / name).write_bytes(
        cifar_batch(
          2,
          labels,
          3071 if kind == "wrong rows" and i == which else 3072,
          b"fine" if kind == "wrong key" and i == which else b"labels",
        )
      )
    path = folder / names[which]
    if kind == "truncated":
      raw = path.read_bytes()
      path.write_bytes(raw[: cut % len(raw)])
    if kind == "archive":
      archive = pathlib.Path(directory) / "cifar-10-python.tar.gz"
      buffer = io.BytesIO()
      with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
      raw = buffer.getvalue()
      archive.write_bytes(raw[: cut % (len(raw) * 9 // 10)])  # the end is zero padding tar may not read
      for file in folder.iterdir():
        file.unlink()
      folder.rmdir()
      rejects(lambda: data.cifar10(directory), "cifar10", "cifar-10-python.tar.gz", error=ValueError)
      return
    rejects(lambda: data.cifar10(directory), "cifar10", names[which], error=ValueError)


CLI_FLAGS = {
  "--epochs": ["0", "-3", "1.5", "ten"],
  "--batch-size": ["0", "-64", "abc"],
  "--lr": ["0", "-0.1", "nan", "inf", "x"],
  "--clip": ["0", "-1", "nan"],
  "--label-smoothing": ["-0.1", "1.5", "nan"],
  "--patience": ["-1", "2.5"],
  "--seed": ["-1", "s"],
  "--model": ["resnet", "VGG11", ""],
  "--dataset": ["imagenet", "MNIST"],
  "--optimizer": ["rmsprop"],
  "--schedule": ["linear"],
}


@often(120)
@given(st.sampled_from(sorted(CLI_FLAGS)), st.data())
def test_cli_flags(flag, draw):
  value = draw.draw(st.sampled_from(CLI_FLAGS[flag]))
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    rejects(lambda: cli([f"{flag}={value}", "--no-progress"]), error=SystemExit)
  assert flag in stderr.getvalue() and value in stderr.getvalue(), stderr.getvalue()


def test_cli_out_must_be_a_directory(tmp_path):
  (tmp_path / "file").write_text("")
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    rejects(lambda: cli([f"--out={tmp_path / 'file'}"]), error=SystemExit)
  assert "--out must be a directory" in stderr.getvalue()


# What users reasonably write works.


@pytest.mark.parametrize(
  "make,shape,expected",
  [
    (lambda: fc.Conv(8, 3), (8, 8, 1), (6, 6, 8)),
    (lambda: fc.Conv(8, 3, strides=2, padding="SAME"), (8, 8, 1), (4, 4, 8)),
    (lambda: fc.Conv(8, 3, padding="CAUSAL", dilation=2), (10, 2), (10, 8)),
    (lambda: fc.Conv(8, 3, strides=(2, 1)), (9, 9, 2), (4, 7, 8)),
    (lambda: fc.ConvTranspose(4, 3, strides=2, padding="SAME"), (5, 5, 2), (10, 10, 4)),
    (lambda: fc.DepthwiseConv(3, strides=2), (9, 9, 3), (4, 4, 3)),
    (lambda: fc.SeparableConv(8, 3, padding="SAME"), (6, 6, 3), (6, 6, 8)),
    (lambda: fc.MaxPool(2, strides=2), (8, 8, 3), (4, 4, 3)),
    (lambda: fc.AvgPool(3, strides=1, padding="SAME"), (5, 5, 3), (5, 5, 3)),
    (lambda: fc.SumPool(2, strides=2), (8, 3), (4, 3)),
    (lambda: fc.L2Pool(2, strides=2), (4, 4, 4, 1), (2, 2, 2, 1)),
    (lambda: fc.AdaptiveAvgPool(3), (7, 7, 2), (3, 3, 2)),
  ],
)
def test_int_windows_mean_every_spatial_axis(make, shape, expected):
  layer = make()
  out, params, state = layer.init(KEY, shape)
  assert out == expected
  x = jax.random.normal(KEY, shape)
  y, _ = layer.apply(params, state, x)
  assert y.shape == expected


def test_int_windows_equal_their_tuple_forms():
  for short, full in [
    (fc.Conv(4, 3, strides=2, dilation=1), fc.Conv(4, (3, 3), strides=(2, 2), dilation=(1, 1))),
    (fc.MaxPool(2, strides=2), fc.MaxPool((2, 2), strides=(2, 2))),
  ]:
    _, params, state = full.init(KEY, (7, 7, 2))
    x = jax.random.normal(KEY, (7, 7, 2))
    np.testing.assert_array_equal(short.apply(params, state, x)[0], full.apply(params, state, x)[0])


def test_dropout_of_one_drops_everything_with_finite_gradients():
  x = jnp.arange(1.0, 7.0)
  y, _ = fc.Dropout(1.0).apply((), (), x, key=KEY, train=True)
  np.testing.assert_array_equal(y, 0.0)
  g = jax.grad(lambda x: fc.Dropout(1.0).apply((), (), x, key=KEY, train=True)[0].sum())(x)
  np.testing.assert_array_equal(g, 0.0)
  np.testing.assert_array_equal(fc.Dropout(1.0).apply((), (), x)[0], x)


def test_zero_units_are_named_at_construction():
  rejects(lambda: fc.Conv(0, (3, 3)), "Conv:", "out_chan", "0", error=ValueError)
  rejects(lambda: fc.Dense(0), "Dense:", "out_dim", "0", error=ValueError)


def test_params_as_lists_are_accepted():
  """As a checkpoint or JSON round trip may leave them: lists and tuples are the same structure."""
  to_lists = lambda tree: [to_lists(t) for t in tree] if isinstance(tree, tuple) else tree
  np.testing.assert_array_equal(NET.apply(to_lists(PARAMS), to_lists(STATE), X)[0], NET.apply(PARAMS, STATE, X)[0])


def test_from_stax_layers_count_their_params_and_an_unknown_field():
  stax = pytest.importorskip("jax.example_libraries.stax")
  net = fc.serial(fc.from_stax(stax.Conv(4, (3, 3))), fc.Relu, fc.Conv(2, 3), fc.Flatten, fc.Dense(2))
  info = fc.summary(net, (8, 8, 1), print_fn=None)
  assert (info["rows"][0]["name"], info["rows"][0]["type"]) == ("0", "stax") and info["rows"][0][
    "params"
  ] == 3 * 3 * 4 + 4
  assert info["params"] == 40 + 74 + 66
  fields = [r["size"] for r in fc.receptive_field(net, (8, 8, 1))]
  assert fields == ["unknown", "unknown", "unknown", None, None]
  _, params, state = net.init(KEY, (8, 8, 1))
  rejects(lambda: net.apply(params[:1], state, jnp.ones((8, 8, 1))), "serial:", "params", "tuple of 5")


@often(40)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=3).filter(lambda window: 0 in window))
def test_empty_kernel_windows(window):
  w = jnp.ones((*window, 2, 3))
  rejects(lambda: fc.ops.conv(jnp.ones((6,) * len(window) + (2,)), w), "conv:", "non-empty window", str(w.shape))


def test_batched_needs_an_apply_function_and_a_batch_axis():
  rejects(lambda: fc.batched(fc.Relu), "batched:", "apply")
  rejects(
    lambda: fc.batched(fc.Relu.apply)((), (), jnp.float32(1.0)), "batched:", "leading batch axis", error=ValueError
  )


def test_the_count_of_bad_inputs(request, capsys):
  """Last: every case above raised a clear error; report how many there were (at least 2,000 in a full run)."""
  module = request.node.parent
  if len([item for item in request.session.items if item.parent is module]) < len(list(module.collect())):
    pytest.skip(f"only part of {module.name} ran: {CASES[0]} bad inputs")
  with capsys.disabled():
    print(f"\n{module.name}: {CASES[0]} bad inputs tried, each rejected with a clear error")
  assert CASES[0] >= 2000
