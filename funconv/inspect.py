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
  """A table of every leaf layer: path, type, output shape, parameter count and multiply-accumulates.

  Shapes come from `init` under `jax.eval_shape`, so no parameter is allocated and nothing is
  run (a ResNet-50 summary takes about a second). MACs count the multiply-adds of
  convolutions, dense layers and pooling windows for one example. Returns `dict(rows=[...],
  params=..., state=..., macs=...)`; prints the table with `print_fn` (None: silent).

  Example:
    >>> info = summary(serial(Conv(8, (3, 3)), Relu, Flatten, Dense(10)), (28, 28, 1))
    >>> info["params"]
    54170
  """
  rows, _ = _record(layer, input_shape, "summary")
  totals = dict(params=sum(r["params"] for r in rows), state=sum(r["state"] for r in rows),
                macs=sum(r["macs"] for r in rows))
  if print_fn is not None:
    width, kind = max([len(r["name"]) for r in rows] + [5]), max([len(r["type"]) for r in rows] + [4])
    lines = [f"{'layer':<{width}}  {'type':<{kind}}  {'output shape':<18} {'params':>12} {'MACs':>16}"]
    lines += [f"{r['name']:<{width}}  {r['type']:<{kind}}  {str(r['output_shape']):<18} {r['params']:>12,} "
              f"{r['macs']:>16,}" for r in rows]
    lines.append(f"{'total':<{width}}  {'':<{kind}}  {'':<18} {totals['params']:>12,} {totals['macs']:>16,}")
    lines.append(f"(non-trainable state: {totals['state']:,} values; input shape {tuple(input_shape)})")
    print_fn("\n".join(lines))
  return dict(rows=rows, **totals)


def receptive_field(layer, input_shape):
  """Each layer's receptive field on the input, computed from the layer geometry.

  Returns one dict per layer: `name` (its path), `type`, `output_shape`, and per spatial axis `size` (input pixels
  that can affect one output), `jump` (input pixels between neighbouring outputs) and `start`
  (centre of the first output's field, in input coordinates; negative inside the padding).
  Layers after a Flatten or global pool see the whole input: their field is None. Across a
  fan-in the widest branch counts. The geometry of a `from_stax` layer is not known: from it on
  (until a Flatten or global pool) `size`, `jump` and `start` are the string `"unknown"`.

  Example:
    >>> rf = receptive_field(serial(Conv(8, (3, 3)), Conv(8, (3, 3))), (32, 32, 3))
    >>> rf[-1]["size"]
    (5, 5)
  """
  out = []
  for r in _record(layer, input_shape, "receptive_field")[0]:
    field = r["field"]
    per_axis = lambda i: field if field is None or field is UNKNOWN else tuple(f[i] for f in field)
    out.append(dict(name=r["name"], type=r["type"], output_shape=r["output_shape"], size=per_axis(1),
                    jump=per_axis(0), start=per_axis(2)))
  return out


def capture(apply, names=None):
  """`apply` that also returns intermediate outputs: `((y, outputs), state)`, `outputs` a dict `{path: output}`.

  `apply` is a model's (a layer's) `apply`; the returned function has its signature, `(params, state, x, *,
  key=None, train=False)`, and works under `jax.jit`, `jax.vmap` (`funconv.batched` maps `outputs` too) and
  `jax.grad`. Paths are those of `summary`'s rows (`"3/1/0"`; with `named` layers `"stage1/block0/conv1"`), and
  containers' outputs are captured too (a `residual` block's under its path). `names` chooses: None, every
  layer; a path or a collection of paths (a ValueError names any that the model does not have); or a function
  `(path, type) -> bool`, e.g. `lambda path, kind: kind == "Conv"`. Outputs not chosen cost nothing under
  `jax.jit`.

  Example:
    >>> net = serial(named("conv", Conv(8, (3, 3))), Relu, Flatten, Dense(10))
    >>> _, params, state = net.init(jax.random.key(0), (28, 28, 1))
    >>> (logits, outputs), state = capture(net.apply, ["conv", "1"])(params, state, jnp.ones((28, 28, 1)))
    >>> {path: y.shape for path, y in outputs.items()}
    {'conv': (26, 26, 8), '1': (26, 26, 8)}
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
  """`(params_names, state_names)`: trees shaped as `layer`'s params and state for `input_shape` whose leaves are
  their names, the layer's path and the entry's name: `"stage1/block0/conv1/W"`, `"3/b"`, `"1/mean"`.

  Names are the params' addresses in `by_name` and `set_by_name`; the params stay the tuples of `init`.

  Example:
    >>> names, _ = param_names(serial(named("conv", Conv(8, (3, 3))), Relu, Flatten, Dense(10)), (28, 28, 1))
    >>> names
    (('conv/W', 'conv/b'), (), (), ('3/W', '3/b'))
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

  return (jax.tree_util.tree_map_with_path(lambda keys, _: name(keys, "param_names"), params),
          jax.tree_util.tree_map_with_path(lambda keys, _: name(keys, "state_names"), state))


def by_name(names, tree):
  """`tree` (params or state) as a flat dict `{name: leaf}`, `names` from `param_names`.

  Example:
    >>> flat = by_name(names, params)     # {"conv/W": ..., "conv/b": ..., "3/W": ..., "3/b": ...}
  """
  _check_names("by_name", names, tree)
  return dict(zip(jax.tree.leaves(names), jax.tree.leaves(tree)))


def set_by_name(names, tree, updates):
  """`tree` (params or state) with the leaves named in `updates` (`{name: array}`) replaced; a ValueError names
  an unknown name or an array whose shape differs from the leaf it replaces.

  Example:
    >>> params = set_by_name(names, params, {"conv/b": jnp.ones(8)})
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
    raise ValueError(f"{op}: names and tree must have the same structure (names from param_names for this model "
                     f"and input shape), got {jax.tree.structure(names)} and {jax.tree.structure(tree)}")


def from_stax(stax_layer, name="stax"):
  """Wrap a `jax.example_libraries.stax` layer `(init_fun, apply_fun)` as a funconv `Layer` named `name`.

  stax layers see batches: `init_fun` gets `(1, *input_shape)` and `apply_fun` one example with
  a batch axis of 1 added (a vmap of it is one batched call wherever stax's ops batch); `key`
  goes to stax's `rng`. State is `()`. `summary` counts its params (not its MACs);
  `receptive_field` reports its field, and those after it, as unknown.

  Example:
    >>> from jax.example_libraries import stax
    >>> net = serial(from_stax(stax.Conv(8, (3, 3))), Relu)
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
