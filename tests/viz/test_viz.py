"""funconv.viz: the arrays behind each figure (shapes, and values on hand-made cases), then each figure once."""

import chex
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import funconv as fc
from funconv import viz

matplotlib.use("Agg")


def _init(net, shape, seed=0):
  """Params and state of `net`'s structure filled with NumPy normals: `init`'s initialisers would compile, per
  shape, longer than these tests run."""
  rng = np.random.default_rng(seed)
  _, params, state = jax.eval_shape(lambda: net.init(jax.random.key(seed), shape))
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), (params, state))


def _normal(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _uniform(seed, shape):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _box_mask(box, spatial):
  mask = np.zeros(spatial, bool)
  mask[tuple(slice(first, last + 1) for first, last in box)] = True
  return mask


def _colorbars(fig):
  return sum(ax.get_label() == "<colorbar>" for ax in fig.axes)


# --- filter_grid


def test_filter_grid_draws_a_first_layer_as_rgb_images_each_scaled_with_zero_at_grey():
  W = _normal(0, (5, 5, 3, 8))
  W[..., 7] = 0
  tiles, vmax, rgb = viz.filter_grid(W)
  assert rgb and vmax == pytest.approx(np.abs(W).max())
  chex.assert_shape(tiles, (8, 5, 5, 3))
  assert tiles.dtype == np.float32 and tiles.min() >= 0 and tiles.max() <= 1
  for i in range(7):
    np.testing.assert_allclose(tiles[i], 0.5 + 0.5 * W[..., i] / np.abs(W[..., i]).max(), rtol=1e-6)
    assert np.abs(tiles[i] - 0.5).max() == pytest.approx(0.5)
  np.testing.assert_array_equal(tiles[7], 0.5)  # an all-zero filter is grey, not NaN


def test_filter_grid_draws_deeper_layers_per_input_channel_on_one_symmetric_range():
  W = _normal(1, (3, 3, 4, 6))
  grid = viz.filter_grid(W)
  assert not grid.rgb and grid.vmax == pytest.approx(np.abs(W).max())
  chex.assert_shape(grid.tiles, (6, 4, 3, 3))
  np.testing.assert_array_equal(grid.tiles[5, 2], W[:, :, 2, 5])
  chex.assert_shape(viz.filter_grid(W[:, :, :3], rgb=False).tiles, (6, 3, 3, 3))
  chex.assert_shape(viz.filter_grid(W[0]).tiles, (6, 4, 1, 3))  # a 1-D kernel: 1 x k strips


@pytest.mark.parametrize(
  "W, error, words",
  [
    (np.ones((3, 3)), ValueError, ["W", "(3, 3)"]),
    (np.ones((3, 3, 3, 1, 2)), ValueError, ["W", "(3, 3, 3, 1, 2)"]),
    ((np.ones((3, 3, 1, 2)), np.ones(2)), TypeError, ["params[0]"]),
    (np.ones((3, 3, 1, 2), np.int32), TypeError, ["W", "int32"]),
  ],
)
def test_filter_grid_rejects_what_is_not_a_kernel(W, error, words):
  with pytest.raises(error, match="filter_grid") as info:
    viz.filter_grid(W)
  assert all(word in str(info.value) for word in words)
  with pytest.raises(ValueError, match=r"filter_grid: rgb=True needs 3 input channels.*\(3, 3, 4, 2\)"):
    viz.filter_grid(np.ones((3, 3, 4, 2)), rgb=True)


# --- activation_maps

CONV1, MID, DEPTHWISE = fc.Conv(4, 3), fc.Conv(6, 3, strides=2), fc.DepthwiseConv(3, padding="SAME")
PIPELINE = (CONV1, fc.Relu, MID, fc.Relu, fc.MaxPool(2, 2), DEPTHWISE, fc.Flatten, fc.Dropout(0.5), fc.Dense(3))
NET = fc.serial(*PIPELINE[:2], fc.named("mid", MID), *PIPELINE[3:])
X = _uniform(2, (17, 17, 3))


@pytest.fixture(scope="module")
def net_params():
  return _init(NET, X.shape)


def test_activation_maps_are_each_convolutions_output_as_by_hand(net_params):
  params, state = net_params
  maps = viz.activation_maps(NET, params, state, X)
  assert list(maps) == viz.conv_layers(NET, X.shape) == ["0", "mid", "5"]
  by_hand, h = {}, X
  for i, (layer, p, s) in enumerate(zip(PIPELINE[:6], params, state)):
    h, _ = layer.apply(p, s, h)
    by_hand[i] = h
  chex.assert_trees_all_close([maps["0"], maps["mid"], maps["5"]], [by_hand[0], by_hand[2], by_hand[5]], atol=1e-6)
  chex.assert_shape([maps["0"], maps["mid"], maps["5"]], [(15, 15, 4), (7, 7, 6), (3, 3, 6)])


def test_activation_maps_choose_layers_by_path_and_by_index(net_params):
  params, state = net_params
  maps = viz.activation_maps(NET, params, state, X, ["1", -1, 0])
  assert list(maps) == ["1", "5", "0"]
  np.testing.assert_array_equal(maps["1"], jnp.maximum(maps["0"], 0))
  assert list(viz.activation_maps(NET, params, state, X, "mid")) == ["mid"]


def test_activation_maps_find_convolutions_inside_nested_containers():
  block = fc.residual(fc.serial(fc.Conv(4, 3, padding="SAME"), fc.Relu))
  net = fc.serial(fc.Conv(4, 3, padding="SAME"), block, fc.named("head", fc.Conv(2, 1)))
  x = jnp.ones((6, 6, 1))
  params, state = _init(net, x.shape)
  maps = viz.activation_maps(net, params, state, x)
  rows = fc.summary(net, x.shape, print_fn=None)["rows"]
  assert list(maps) == [row["name"] for row in rows if row["type"] == "Conv"]
  assert len(maps) == 3 and list(maps)[-1] == "head"
  chex.assert_trees_all_close(maps["head"], net.apply(params, state, x)[0])
  single = fc.Conv(3, 3)  # an unnamed one-layer model: summary calls it "Conv"
  (p1, s1), x1 = _init(single, (5, 5, 1)), jnp.ones((5, 5, 1))
  chex.assert_trees_all_close(viz.activation_maps(single, p1, s1, x1), {"Conv": single.apply(p1, s1, x1)[0]})


@pytest.mark.parametrize(
  "layers, error, pattern",
  [
    (3, ValueError, r"index 3 is out of range for the model's 3 convolutions"),
    (["0", "nope"], ValueError, r"the model has no layer 'nope'; its layers are \['0', '1', 'mid'"),
    ([True], TypeError, r"layers\[0\] must be a layer path"),
    (1.5, TypeError, r"layers must be None, a path, an int or a list of them, got 1.5"),
  ],
)
def test_activation_maps_reject_layers_the_model_does_not_have(net_params, layers, error, pattern):
  params, state = net_params
  with pytest.raises(error, match="activation_maps: " + pattern):
    viz.activation_maps(NET, params, state, X, layers)


def test_activation_maps_reject_an_integer_input(net_params):
  with pytest.raises(TypeError, match=r"activation_maps: x must be a floating-point array, got dtype int32"):
    viz.activation_maps(NET, *net_params, jnp.ones(X.shape, jnp.int32))


# --- classic kernels


def test_classic_kernels_are_3x3_with_the_sums_that_make_them_what_they_are():
  kernels = viz.classic_kernels()
  assert list(kernels) == ["identity", "box blur", "gaussian blur", "sharpen", "laplacian", "sobel x", "sobel y"]
  for name, k in kernels.items():
    chex.assert_shape(k, (3, 3))
    assert k.dtype == np.float32
    assert k.sum() == pytest.approx(0.0 if name in ("laplacian", "sobel x", "sobel y") else 1.0, abs=1e-6)


def _step_image():
  """(8, 10, 3): 0 left of column 5, 1 from it on, in channels 0 and 1; channel 2 a constant 0.5."""
  image = np.zeros((8, 10, 3), np.float32)
  image[:, 5:, :2] = 1
  image[..., 2] = 0.5
  return image


@pytest.mark.parametrize("name, left, right", [("sobel x", 4, 4), ("laplacian", 1, -1)])
def test_an_edge_filter_on_a_step_image_is_non_zero_exactly_along_the_step(name, left, right):
  y = np.asarray(viz.apply_kernel(_step_image(), viz.classic_kernels()[name]))
  chex.assert_shape(y, (8, 10, 3))
  expected = np.zeros((8, 10), np.float32)
  expected[:, 4], expected[:, 5] = left, right
  for c in (0, 1):
    np.testing.assert_allclose(y[..., c], expected, atol=1e-6)
  np.testing.assert_allclose(y[..., 2], 0, atol=1e-6)  # a flat channel has no edge, not even at the border
  np.testing.assert_allclose(viz.apply_kernel(_step_image(), viz.classic_kernels()["sobel y"]), 0, atol=1e-6)


@pytest.mark.parametrize("name", ["box blur", "gaussian blur", "identity", "sharpen"])
def test_kernels_summing_to_one_keep_a_constant_image(name):
  image = jnp.full((6, 7, 3), 0.3)
  np.testing.assert_allclose(viz.apply_kernel(image, viz.classic_kernels()[name]), 0.3, rtol=1e-6)


def test_apply_kernel_is_cross_correlation_per_channel_with_the_padding_asked():
  image = _uniform(3, (7, 9, 2))
  kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
  padded = np.pad(image, ((0, 1), (1, 1), (0, 0)))  # "SAME" for a 2x3 window: the extra row after
  expected = sum(kernel[i, j] * padded[i : i + 7, j : j + 9] for i in range(2) for j in range(3))
  np.testing.assert_allclose(viz.apply_kernel(image, kernel, padding="SAME"), expected, rtol=1e-5)
  chex.assert_shape(jax.jit(viz.apply_kernel)(image, kernel), (7, 9, 2))
  chex.assert_shape(viz.apply_kernel(image, kernel, padding="VALID"), (6, 7, 2))


@pytest.mark.parametrize(
  "image, kernel, error, pattern",
  [
    (np.ones((5, 5)), np.ones((3, 3)), ValueError, r"image must have shape \(H, W, C\).*got shape \(5, 5\)"),
    (np.ones((5, 5, 1)), np.ones((3, 3, 1)), ValueError, r"kernel must be a non-empty 2-D array.*\(3, 3, 1\)"),
    (np.ones((5, 5, 1), np.uint8), np.ones((3, 3)), TypeError, r"image must be a floating-point array.*uint8"),
  ],
)
def test_apply_kernel_rejects_bad_shapes_and_integer_images(image, kernel, error, pattern):
  with pytest.raises(error, match="apply_kernel: " + pattern):
    viz.apply_kernel(image, kernel)


def test_sample_photograph_is_a_float_image_in_the_unit_range_downscaled_by_block_means():
  full = viz.sample_photograph(1)
  chex.assert_shape(full, (427, 640, 3))
  assert full.dtype == np.float32 and 0 <= full.min() and full.max() <= 1
  small = viz.sample_photograph(1, downscale=4)
  chex.assert_shape(small, (106, 160, 3))
  np.testing.assert_allclose(small[3, 7], full[12:16, 28:32].mean(axis=(0, 1)), rtol=1e-5)
  with pytest.raises(ValueError, match=r"sample_photograph: index must be 0 \(temple\) or 1 \(flower\), got 2"):
    viz.sample_photograph(2)
  with pytest.raises(ValueError, match=r"sample_photograph: downscale must be an int >= 1"):
    viz.sample_photograph(0, downscale=0)


# --- saliency and receptive fields


def test_saliency_is_zero_outside_the_receptive_field_of_the_score(net_params):
  # The class scores read one position of the second convolution's output only: the Dense weights of the others
  # are zeroed. Tanh (not ReLU) so that no gradient inside the field is 0 by chance.
  net = fc.serial(fc.Conv(3, 3), fc.Tanh, fc.Conv(2, 3, strides=2), fc.Flatten, fc.Dense(4))
  x = _uniform(4, (13, 15, 1))
  params, state = _init(net, x.shape)
  position, (h, w) = (2, 4), (5, 6)
  keep = np.zeros((h, w, 2, 1), np.float32)
  keep[position] = 1
  params = (*params[:4], (params[4][0] * keep.reshape(-1, 1), params[4][1]))
  result = viz.saliency(net, params, state, x, 1)
  chex.assert_shape([result.map, result.gradient], [(13, 15), (13, 15, 1)])
  chex.assert_trees_all_close(result.gradient, jax.grad(lambda x: net.apply(params, state, x)[0][1])(x))
  box = viz.receptive_field_box(net, x.shape, "2", position)
  assert box == ((4, 8), (8, 12))
  np.testing.assert_array_equal(np.asarray(result.map) != 0, _box_mask(box, (13, 15)))
  # In evaluation mode: the first model's Dropout neither needs a key nor drops.
  chex.assert_shape(viz.saliency(NET, *net_params, X, 2).map, (17, 17))


@pytest.mark.parametrize(
  "class_index, error, pattern",
  [
    (3, ValueError, r"class_index must be in \[0, 3\) for the model's output of shape \(3,\), got 3"),
    (-1, ValueError, r"class_index must be in \[0, 3\)"),
    (1.0, TypeError, r"class_index must be an int"),
  ],
)
def test_saliency_rejects_a_class_the_model_does_not_score(net_params, class_index, error, pattern):
  with pytest.raises(error, match="saliency: " + pattern):
    viz.saliency(NET, *net_params, X, class_index)


def test_saliency_needs_a_vector_of_scores():
  net = fc.Conv(2, 3)
  params, state = _init(net, (6, 6, 1))
  with pytest.raises(ValueError, match=r"saliency: the model's output must be a vector.*\(4, 4, 2\)"):
    viz.saliency(net, params, state, jnp.ones((6, 6, 1)), 0)


def test_receptive_field_box_follows_strides_and_is_clipped_to_the_input():
  net = fc.serial(fc.Conv(4, 3), fc.Conv(4, 3, strides=2), fc.Conv(4, 3, padding="SAME"), fc.Flatten)
  assert viz.receptive_field_box(net, (32, 32, 1), "0", (5, 7)) == ((5, 7), (7, 9))
  assert viz.receptive_field_box(net, (32, 32, 1), "1", (0, 2)) == ((0, 4), (4, 8))
  assert viz.receptive_field_box(net, (32, 32, 1), "2", 0) == ((0, 6), (0, 6))  # its padding lies outside
  assert viz.receptive_field_box(net, (32, 32, 1), "2", (13, 13)) == ((24, 31), (24, 31))
  assert viz.receptive_field_box(net, (32, 32, 1), "3", 0) == ((0, 31), (0, 31))  # after Flatten: everything
  assert viz.receptive_field_box(fc.Conv(2, 5), (9, 2), "Conv", 4) == ((4, 8),)  # 1-D


@pytest.mark.parametrize(
  "layer, position, error, pattern",
  [
    ("9", (0, 0), ValueError, r"the model has no layer '9'"),
    ("1", (14, 0), ValueError, r"position must index the layer's output positions \(14, 14\).*\(14, 0\)"),
    ("1", (0, 0, 0), ValueError, r"position must index .*got \(0, 0, 0\)"),
    ("1", "centre", TypeError, r"position must be an int or one int per spatial axis"),
  ],
)
def test_receptive_field_box_rejects_unknown_layers_and_positions(layer, position, error, pattern):
  net = fc.serial(fc.Conv(4, 3), fc.Conv(4, 3, strides=2))
  with pytest.raises(error, match="receptive_field_box: " + pattern):
    viz.receptive_field_box(net, (32, 32, 1), layer, position)


def test_measured_field_equals_the_computed_box_without_padding_and_lies_inside_it_otherwise():
  valid = fc.serial(fc.Conv(3, 3), fc.Tanh, fc.Conv(3, 3, strides=2), fc.Tanh, fc.Conv(2, 2, dilation=2))
  x = _uniform(5, (16, 14, 2))
  params, state = _init(valid, x.shape)
  for layer, position in [("2", (0, 0)), ("4", (3, 2))]:
    mask = viz.measured_field(valid, params, state, x, layer, position)
    assert mask.dtype == bool and mask.shape == (16, 14)
    np.testing.assert_array_equal(mask, _box_mask(viz.receptive_field_box(valid, x.shape, layer, position), (16, 14)))
  # Zero padding, ReLUs and a max pool: the gradient reaches part of the computed field only.
  gated = fc.serial(fc.Conv(3, 3, padding="SAME"), fc.Relu, fc.MaxPool(2, 2), fc.Conv(2, 3, padding="SAME"))
  params, state = _init(gated, x.shape)
  for position in [(0, 0), (5, 3)]:
    mask = viz.measured_field(gated, params, state, x - 0.5, "3", position)
    box = _box_mask(viz.receptive_field_box(gated, x.shape, "3", position), (16, 14))
    assert mask.any() and not (mask & ~box).any()
  with pytest.raises(ValueError, match=r"measured_field: position must index .*\(8, 7\)"):
    viz.measured_field(gated, params, state, x, "3", (8, 0))


# --- figures


def test_plot_filters_draws_rgb_tiles_and_per_channel_tiles_with_a_colour_bar(tmp_path):
  W = _normal(6, (5, 5, 3, 6))
  fig = viz.plot_filters(W, path=tmp_path / "rgb.png")
  assert "6 RGB filters 5x5" in fig._suptitle.get_text() and (tmp_path / "rgb.png").stat().st_size > 0
  assert [ax.get_title() for ax in fig.axes[:2]] == ["filter 0", "filter 1"] and _colorbars(fig) == 0
  fig = viz.plot_filters(_normal(7, (3, 3, 10, 4)), max_channels=4)
  assert "first 4 input channels" in fig._suptitle.get_text()
  assert _colorbars(fig) == 1 and fig.axes[0].get_title() == "in 0" and fig.axes[0].get_ylabel() == "filter 0"


def test_plot_activation_maps_labels_each_layer_with_its_own_colour_bar(net_params, tmp_path):
  maps = viz.activation_maps(NET, *net_params, X)
  fig = viz.plot_activation_maps(maps, X, max_channels=4, path=tmp_path / "maps.png")
  assert fig._suptitle.get_text().startswith("Activation maps") and (tmp_path / "maps.png").exists()
  assert _colorbars(fig) == 3 and fig.axes[0].get_title() == "input (17, 17, 3)"
  assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["0\n15x15x4", "mid\n7x7x6", "5\n3x3x6"]
  with pytest.raises(ValueError, match=r"plot_activation_maps: activation 'x' must be 2-D maps.*\(4, 2\)"):
    viz.plot_activation_maps({"x": np.ones((4, 2))})


def test_plot_classic_kernels_titles_every_panel_and_scales_the_edge_responses(tmp_path):
  fig = viz.plot_classic_kernels(viz.sample_photograph(1, downscale=8), path=tmp_path / "kernels.png")
  titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
  assert titles == [*viz.classic_kernels(), "edge magnitude (Sobel)"] and fig._suptitle.get_text()
  assert _colorbars(fig) == 4  # Laplacian, Sobel x and y, and the magnitude
  assert (tmp_path / "kernels.png").stat().st_size > 0


def test_plot_saliency_shows_the_map_with_a_colour_bar(net_params, tmp_path):
  result = viz.saliency(NET, *net_params, X, 0)
  fig = viz.plot_saliency(X, result, class_index=0, path=tmp_path / "saliency.png")
  assert "class 0" in fig._suptitle.get_text() and _colorbars(fig) == 1
  assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "saliency", "saliency over the input"]
  with pytest.raises(ValueError, match=r"plot_saliency: saliency_map must have x's spatial shape \(17, 17\)"):
    viz.plot_saliency(X, np.ones((4, 4)))


def test_plot_receptive_field_draws_the_box_and_the_measured_mask_with_a_legend(tmp_path):
  net = fc.serial(fc.Conv(2, 3), fc.Tanh, fc.Conv(2, 3))
  x = _uniform(8, (12, 12, 1))
  params, state = _init(net, x.shape)
  box = viz.receptive_field_box(net, x.shape, "2", (3, 4))
  mask = viz.measured_field(net, params, state, x, "2", (3, 4))
  fig = viz.plot_receptive_field(x, box, mask, unit=("2", (3, 4)), path=tmp_path / "field.png")
  ax = fig.axes[0]
  assert ax.get_title() == "Receptive field of unit (3, 4) of layer '2'"
  assert ax.get_xlabel() == "column" and ax.get_ylabel() == "row" and len(ax.patches) == 1
  labels = [t.get_text() for t in fig.legends[0].get_texts()]
  assert labels == ["measured: gradient != 0 (25 pixels)", "computed: rows 3-7, columns 4-8 (5x5)"]
