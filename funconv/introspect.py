"""Looking inside a model: `summary`, `receptive_field`, `capture` of intermediate outputs, params and state by
name; and `from_stax`."""

import jax

from funconv.layers.base import UNKNOWN, capturing, check_input_shape, check_layer, layer, recording


def _record(layer, input_shape, op):
  """Every leaf layer's row, and the shapes `init` returns, from `init` under `jax.eval_shape`: nothing
  allocated."""
  check_layer(layer, op)
  input_shape = check_input_shape(input_shape, op)
  with recording(input_shape) as rec:
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), input_shape))
  return rec.rows, shapes


def summary(layer, input_shape, print_fn=print):
  """A table of every leaf layer of `layer` for one example of shape `input_shape`: path, type, output shape,
  parameter count and multiply-accumulates.

  Shapes come from `layer.init` under `jax.eval_shape`, so no parameter is allocated and nothing
  is computed (a ResNet-50 summary takes about a second, for tracing). A layer's path is its
  index in its container, or the name given with `funconv.named` (or a keyword of `serial`):
  `"3"`, `"3/1/0"`, `"stage1/block0/residual/branches/main/conv1"`; a bare leaf layer's path is
  its type. MACs count the multiply-adds of convolutions, dense layers and pooling windows for
  one example (0 for elementwise layers, normalisations and `from_stax` layers).

  Args:
    layer: a funconv `Layer` (a model).
    input_shape: one example's shape, no batch axis, e.g. `(28, 28, 1)` for `(*spatial, C)`
      images; a list of shapes for a layer that takes several inputs.
    print_fn: called once with the table, a string (default `print`); None prints nothing.

  Returns:
    A dict: `rows`, one dict per leaf layer in `init` order, with (among internal entries)
    `name` (the path), `type`, `input_shape` and `output_shape` (tuples), `params` and `state`
    (numbers of values), `macs` (ints); and the totals `params`, `state` (non-trainable values,
    e.g. BatchNorm's running statistics) and `macs`, ints.

  Raises:
    TypeError: `layer` is not a `Layer` (e.g. a constructor not called, or a stax pair: wrap it
      with `from_stax`); `input_shape` is not a tuple of ints.
    ValueError: `input_shape` has a negative size; the layers reject the shape (as their `init`
      does, naming the layer's path); two layers have the same path.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(8, (3, 3)), fc.Relu, fc.MaxPool((2, 2), strides=(2, 2)), fc.Flatten, fc.Dense(10))
    >>> info = fc.summary(net, (28, 28, 1))
    layer  type     output shape             params             MACs
    0      Conv     (26, 26, 8)                  80           48,672
    1      Relu     (26, 26, 8)                   0                0
    2      MaxPool  (13, 13, 8)                   0            5,408
    3      Flatten  (1352,)                       0                0
    4      Dense    (10,)                    13,530           13,520
    total                                    13,610           67,600
    (non-trainable state: 0 values; input shape (28, 28, 1))
    >>> info["params"], info["state"], info["macs"]
    (13610, 0, 67600)
    >>> fc.summary(fc.models.resnet18(), (224, 224, 3), print_fn=None)["params"]   # silent
    11689512
  """
  rows, _ = _record(layer, input_shape, "summary")
  totals = dict(
    params=sum(r["params"] for r in rows), state=sum(r["state"] for r in rows), macs=sum(r["macs"] for r in rows)
  )
  if print_fn is not None:
    width, kind = max([len(r["name"]) for r in rows] + [5]), max([len(r["type"]) for r in rows] + [4])
    lines = [f"{'layer':<{width}}  {'type':<{kind}}  {'output shape':<18} {'params':>12} {'MACs':>16}"]
    lines += [
      f"{r['name']:<{width}}  {r['type']:<{kind}}  {str(r['output_shape']):<18} {r['params']:>12,} {r['macs']:>16,}"
      for r in rows
    ]
    lines.append(f"{'total':<{width}}  {'':<{kind}}  {'':<18} {totals['params']:>12,} {totals['macs']:>16,}")
    lines.append(f"(non-trainable state: {totals['state']:,} values; input shape {tuple(input_shape)})")
    print_fn("\n".join(lines))
  return dict(rows=rows, **totals)


def receptive_field(layer, input_shape):
  """Each leaf layer's receptive field on the input, computed from the layers' geometry (nothing is run).

  Args:
    layer: a funconv `Layer` (a model).
    input_shape: one example's shape `(*spatial, C)`, no batch axis.

  Returns:
    A list with one dict per leaf layer, in the order of `summary`'s rows: `name` (its path),
    `type`, `output_shape`, and per spatial axis (tuples of one entry per axis) `size` (the
    number of input pixels that can affect one output, int), `jump` (input pixels between
    neighbouring outputs, int) and `start` (the centre of the first output's field, in input
    coordinates, a float; negative inside the padding). Layers after a `Flatten` or a global
    pool see the whole input: their `size`, `jump` and `start` are None. Across a fan-in the
    widest branch counts. The geometry of a `from_stax` layer is not known: from it on (until
    a `Flatten` or global pool) `size`, `jump` and `start` are the string `"unknown"`.
    Transposed convolutions are not accounted for: their field is that of their input.

  Raises:
    TypeError, ValueError: as `summary`.

  Examples:
    >>> import funconv as fc
    >>> net = fc.serial(fc.Conv(8, 3, padding="SAME"), fc.Conv(8, 3, strides=2), fc.Conv(8, 3), fc.GlobalAvgPool)
    >>> for row in fc.receptive_field(net, (32, 32, 3)):
    ...   print(row["name"], row["type"], row["output_shape"], row["size"], row["jump"], row["start"])
    0 Conv (32, 32, 8) (3, 3) (1, 1) (0.0, 0.0)
    1 Conv (15, 15, 8) (5, 5) (2, 2) (1.0, 1.0)
    2 Conv (13, 13, 8) (9, 9) (2, 2) (3.0, 3.0)
    3 GlobalAvgPool (8,) None None None
  """
  out = []
  for r in _record(layer, input_shape, "receptive_field")[0]:
    field = r["field"]
    per_axis = lambda i: field if field is None or field is UNKNOWN else tuple(f[i] for f in field)
    out.append(
      dict(
        name=r["name"],
        type=r["type"],
        output_shape=r["output_shape"],
        size=per_axis(1),
        jump=per_axis(0),
        start=per_axis(2),
      )
    )
  return out


def capture(apply, names=None):
  """`apply` that also returns intermediate outputs: `((y, outputs), state)`, `outputs` a dict `{path: output}`.

  The returned function has `apply`'s signature, `(params, state, x, *, key=None, train=False)`,
  and works under `jax.jit`, `jax.vmap` (`funconv.batched` maps `outputs` too: each gets a
  leading batch axis) and `jax.grad`. Paths are those of `summary`'s rows (`"3/1/0"`; with
  `named` layers `"stage1/block0/conv1"`), and containers' outputs are captured too (a
  `residual` block's under its path). Outputs not chosen cost nothing under `jax.jit`.

  Args:
    apply: a model's (a layer's) `apply`.
    names: which outputs to return: None (default), every layer's; a path or a collection of
      paths, in that order; or a function `(path, type) -> bool`, e.g.
      `lambda path, kind: kind == "Conv"`.

  Returns:
    A function `(params, state, x, *, key=None, train=False) -> ((y, outputs), state)`: `y` and
    `state` as `apply` returns them, `outputs` `{path: array}` with each layer's output for `x`.

  Raises:
    TypeError: `apply` is not callable, or `names` is not None, a string, strings or a function.
    ValueError: (from the returned function) a path in `names` that the model does not have,
      naming it and the model's paths.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(conv=fc.Conv(8, (3, 3)), act=fc.Relu, flatten=fc.Flatten, head=fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> (logits, outputs), state = fc.capture(net.apply, ["conv", "act"])(params, state, jnp.ones((28, 28, 1)))
    >>> logits.shape, {path: y.shape for path, y in outputs.items()}
    ((10,), {'conv': (26, 26, 8), 'act': (26, 26, 8)})
    >>> batched = fc.batched(fc.capture(net.apply, lambda path, kind: kind == "Conv"))
    >>> (logits, outputs), state = batched(params, state, jnp.ones((4, 28, 28, 1)))
    >>> logits.shape, {path: y.shape for path, y in outputs.items()}
    ((4, 10), {'conv': (4, 26, 26, 8)})
  """
  if not callable(apply):
    raise TypeError(f"capture: apply must be a layer's apply function, got {apply!r}")
  if names is not None and not callable(names):
    wanted = [names] if isinstance(names, str) else list(names)
    if not all(isinstance(n, str) for n in wanted):
      raise TypeError(f"capture: names must be None, a path, a collection of paths or a function, got {names!r}")

  def run(params, state, x, *, key=None, train=False):
    with capturing() as outputs:
      y, state = apply(params, state, x, key=key, train=train)
    if names is None or callable(names):
      return (y, {p: out for p, (kind, out) in outputs.items() if names is None or names(p, kind)}), state
    missing = [n for n in wanted if n not in outputs]
    if missing:
      raise ValueError(f"capture: the model has no layer {missing[0]!r}; its layers are {list(outputs)}")
    return (y, {n: outputs[n][1] for n in wanted}), state

  return run


def param_names(layer, input_shape):
  """The name of every entry of `layer`'s params and state for `input_shape`, as trees shaped like them.

  A name is the layer's path (as in `summary`) and the entry's name, joined by `/`:
  `"stage1/block0/residual/branches/main/conv1/W"`, `"3/b"`, `"1/mean"` (entries that a layer
  does not name are named by their index). Names are the addresses that `by_name` and
  `set_by_name` use; the params stay the nested tuples of `init`. Nothing is allocated (`init`
  runs under `jax.eval_shape`).

  Args:
    layer: a funconv `Layer` (a model).
    input_shape: one example's shape `(*spatial, C)`, no batch axis.

  Returns:
    `(params_names, state_names)`: pytrees with the structure of `init`'s params and state
    whose leaves are strings.

  Raises:
    TypeError, ValueError: as `summary`.

  Examples:
    >>> import funconv as fc
    >>> net = fc.serial(fc.named("conv", fc.Conv(8, (3, 3))), fc.BatchNorm(), fc.Flatten, fc.Dense(10))
    >>> names, state_names = fc.param_names(net, (28, 28, 1))
    >>> names
    (('conv/W', 'conv/b'), ('1/beta', '1/gamma'), (), ('3/W', '3/b'))
    >>> state_names
    ((), ('1/mean', '1/var'), (), ())
  """
  rows, (_, params, state) = _record(layer, input_shape, "param_names")
  rows = {row["index"]: row for row in rows}

  def name(keys, labels):
    places = [getattr(k, "idx", getattr(k, "key", getattr(k, "name", k))) for k in keys]
    for n in range(len(places), -1, -1):
      row = rows.get(tuple(places[:n]))
      if row is not None:
        rest = [str(p) for p in places[n:]]
        if rest and isinstance(places[n], int) and places[n] < len(row[labels]):
          rest[0] = row[labels][places[n]]
        return "/".join(([row["name"]] if row["index"] or row["name"] != row["type"] else []) + rest)
    return "/".join(map(str, places))

  return (
    jax.tree_util.tree_map_with_path(lambda keys, _: name(keys, "param_names"), params),
    jax.tree_util.tree_map_with_path(lambda keys, _: name(keys, "state_names"), state),
  )


def by_name(names, tree):
  """`tree` (params or state) as a flat dict `{name: leaf}`, with the names of `param_names`.

  Args:
    names: the names tree from `param_names` for the same model and input shape (its first
      entry for params, its second for state).
    tree: the params (or state) of that model.

  Returns:
    A dict from each name to its leaf (an array), in tree order.

  Raises:
    ValueError: `names` and `tree` have different structures (names of another model).

  Examples:
    >>> import jax
    >>> import funconv as fc
    >>> net = fc.serial(fc.named("conv", fc.Conv(8, (3, 3))), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> names, _ = fc.param_names(net, (28, 28, 1))
    >>> {name: w.shape for name, w in fc.by_name(names, params).items()}
    {'conv/W': (3, 3, 1, 8), 'conv/b': (8,), '3/W': (5408, 10), '3/b': (10,)}
  """
  _check_names("by_name", names, tree)
  return dict(zip(jax.tree.leaves(names), jax.tree.leaves(tree)))


def set_by_name(names, tree, updates):
  """`tree` (params or state) with the leaves named in `updates` replaced: e.g. load pretrained weights.

  Args:
    names: the names tree from `param_names` for the same model and input shape.
    tree: the params (or state) of that model.
    updates: a dict `{name: array}`; each array must have the shape of the leaf it replaces (it
      is used as given: its dtype is kept).

  Returns:
    A new tree with `tree`'s structure; `tree` itself is unchanged.

  Raises:
    ValueError: `names` and `tree` have different structures; a name in `updates` that is not
      in `names` (the message lists the names); an array whose shape differs from its leaf's.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> net = fc.serial(fc.named("conv", fc.Conv(8, (3, 3))), fc.Relu, fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> names, _ = fc.param_names(net, (28, 28, 1))
    >>> params = fc.set_by_name(names, params, {"conv/b": jnp.ones(8)})
    >>> params[0][1].tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  """
  _check_names("set_by_name", names, tree)
  flat = by_name(names, tree)
  for n, value in updates.items():
    if n not in flat:
      raise ValueError(f"set_by_name: no leaf named {n!r}; the names are {list(flat)}")
    if jax.numpy.shape(value) != jax.numpy.shape(flat[n]):
      raise ValueError(f"set_by_name: {n} has shape {jax.numpy.shape(flat[n])}, got {jax.numpy.shape(value)}")
  return jax.tree.map(lambda n, leaf: updates.get(n, leaf), names, tree)


def _check_names(op, names, tree):
  if jax.tree.structure(names) != jax.tree.structure(tree):
    raise ValueError(
      f"{op}: names and tree must have the same structure (names from param_names for this model "
      f"and input shape), got {jax.tree.structure(names)} and {jax.tree.structure(tree)}"
    )


def from_stax(stax_layer, name="stax"):
  """Wrap a `jax.example_libraries.stax` layer `(init_fun, apply_fun)` as a funconv `Layer`.

  stax layers see batches: `init` calls `init_fun(key, (1, *input_shape))` and drops the batch
  axis of its output shape; `apply` calls `apply_fun(params, x[None], rng=key)` (no `rng` where
  `key` is None) on one example with a batch axis of 1 added, and removes it (under
  `funconv.batched`, a vmap of that is one batched call wherever stax's ops batch). Params are
  stax's own (e.g. `(W, b)` of a `stax.Conv`, `W` in HWIO with stax's default dimension
  numbers); state is `()`. `summary` counts its params (not its MACs); `receptive_field`
  reports its field, and those after it, as `"unknown"`.

  Args:
    stax_layer: a stax layer, a pair `(init_fun, apply_fun)` (e.g. `stax.Conv(8, (3, 3))`,
      `stax.serial(...)`).
    name: the layer's type in `summary` (default `"stax"`).

  Returns:
    A `Layer` for one example of shape `input_shape` (no batch axis).

  Raises:
    TypeError: `stax_layer` is not a pair of functions.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jax.example_libraries import stax
    >>> import funconv as fc
    >>> net = fc.serial(fc.from_stax(stax.serial(stax.Conv(8, (3, 3)), stax.Relu)), fc.Flatten, fc.Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> [w.shape for w in params[0][0]]          # stax.serial's params: a list, one entry per stax layer
    [(3, 3, 1, 8), (1, 1, 1, 8)]
    >>> logits, state = fc.batched(net.apply)(params, state, jnp.ones((4, 28, 28, 1)))
    >>> logits.shape
    (4, 10)
  """
  if not (isinstance(stax_layer, tuple) and len(stax_layer) == 2 and all(map(callable, stax_layer))):
    raise TypeError(f"from_stax: stax_layer must be a stax layer, a pair (init_fun, apply_fun), got {stax_layer!r}")
  init_fun, apply_fun = stax_layer

  def init(key, input_shape):
    output_shape, params = init_fun(key, (1, *input_shape))
    return tuple(int(n) for n in output_shape[1:]), params, ()

  def apply(params, state, x, *, key=None, train=False):
    kwargs = {} if key is None else dict(rng=key)
    return apply_fun(params, x[None], **kwargs)[0], state

  return layer(name, init, apply, window=UNKNOWN)
