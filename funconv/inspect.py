"""Looking inside a model without running it: `summary`, `receptive_field`; and `from_stax`."""
import jax

from funconv.layers.base import Layer, recording


def _record(layer, input_shape):
  """Every leaf layer's row, from `init` under `jax.eval_shape`: shapes only, nothing allocated."""
  with recording(input_shape) as rec:
    jax.eval_shape(lambda: layer.init(jax.random.key(0), tuple(input_shape)))
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
  rows = _record(layer, input_shape)
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
  fan-in the widest branch counts.

  Example:
    >>> rf = receptive_field(serial(Conv(8, (3, 3)), Conv(8, (3, 3))), (32, 32, 3))
    >>> rf[-1]["size"]
    (5, 5)
  """
  out = []
  for r in _record(layer, input_shape):
    field = r["field"]
    out.append(dict(name=r["name"], output_shape=r["output_shape"],
                    size=None if field is None else tuple(s for _, s, _ in field),
                    jump=None if field is None else tuple(j for j, _, _ in field),
                    start=None if field is None else tuple(st for _, _, st in field)))
  return out


def from_stax(stax_layer):
  """Wrap a `jax.example_libraries.stax` layer `(init_fun, apply_fun)` as a funconv `Layer`.

  stax layers see batches: `init_fun` gets `(1, *input_shape)` and `apply_fun` one example with
  a batch axis of 1 added (a vmap of it is one batched call wherever stax's ops batch); `key`
  goes to stax's `rng`. State is `()`.

  Example:
    >>> from jax.example_libraries import stax
    >>> net = serial(from_stax(stax.Conv(8, (3, 3))), Relu)
  """
  init_fun, apply_fun = stax_layer

  def init(key, input_shape):
    output_shape, params = init_fun(key, (1, *input_shape))
    return tuple(output_shape[1:]), params, ()

  def apply(params, state, x, *, key=None, train=False):
    kwargs = {} if key is None else dict(rng=key)
    return apply_fun(params, x[None], **kwargs)[0], state

  return Layer(init, apply)
