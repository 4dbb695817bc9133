"""Looking inside a model without running it: `summary`, `receptive_field`; and `from_stax`."""
import jax

from funconv.layers.base import UNKNOWN, check_input_shape, check_layer, layer, recording


def _record(layer, input_shape, op):
  """Every leaf layer's row, from `init` under `jax.eval_shape`: shapes only, nothing allocated."""
  check_layer(layer, op)
  input_shape = check_input_shape(input_shape, op)
  with recording(input_shape) as rec:
    jax.eval_shape(lambda: layer.init(jax.random.key(0), input_shape))
  return rec.rows


def summary(layer, input_shape, print_fn=print):
  """A table of every layer: name, output shape, parameter count and multiply-accumulates.

  Shapes come from `init` under `jax.eval_shape`, so no parameter is allocated and nothing is
  run (a ResNet-50 summary takes about a second). MACs count the multiply-adds of
  convolutions, dense layers and pooling windows for one example. Returns `dict(rows=[...],
  params=..., state=..., macs=...)`; prints the table with `print_fn` (None: silent).

  Example:
    >>> info = summary(serial(Conv(8, (3, 3)), Relu, Flatten, Dense(10)), (28, 28, 1))
    >>> info["params"]
    54170
  """
  rows = _record(layer, input_shape, "summary")
  totals = dict(params=sum(r["params"] for r in rows), state=sum(r["state"] for r in rows),
                macs=sum(r["macs"] for r in rows))
  if print_fn is not None:
    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'output shape':<18} {'params':>12} {'MACs':>16}"]
    lines += [f"{r['name']:<{width}}  {str(r['output_shape']):<18} {r['params']:>12,} {r['macs']:>16,}" for r in rows]
    lines.append(f"{'total':<{width}}  {'':<18} {totals['params']:>12,} {totals['macs']:>16,}")
    lines.append(f"(non-trainable state: {totals['state']:,} values; input shape {tuple(input_shape)})")
    print_fn("\n".join(lines))
  return dict(rows=rows, **totals)


def receptive_field(layer, input_shape):
  """Each layer's receptive field on the input, computed from the layer geometry.

  Returns one dict per layer: `name`, `output_shape`, and per spatial axis `size` (input pixels
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
  for r in _record(layer, input_shape, "receptive_field"):
    field = r["field"]
    per_axis = lambda i: field if field is None or field is UNKNOWN else tuple(f[i] for f in field)
    out.append(dict(name=r["name"], output_shape=r["output_shape"], size=per_axis(1), jump=per_axis(0),
                    start=per_axis(2)))
  return out


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
