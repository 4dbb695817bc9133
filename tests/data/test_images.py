"""Image folders on tiny images the tests write with Pillow: decoding every format, the layout's rules, the errors
that name the bad file, the source grain reads."""

import os
import pathlib
import pickle

import grain
import numpy as np
import pytest
from PIL import Image

from funconv import data

NAMES = ["eight", "five", "four", "nine", "one"]  # sorted, not in the digits' order


def pattern(shape, seed):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth(shape):
  """A gradient, which JPEG keeps within a few levels (noise it would not)."""
  y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
  channels = [x * 5 + y, y * 7, (x + y) * 3][: shape[2]] if len(shape) == 3 else [x * 5 + y]
  return np.stack(channels, -1).astype(np.uint8).reshape(shape)


def save(path, array, **options):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **options)
  return path


def make_folder(root, splits=("train", "val"), shape=(6, 5), suffix=".png", per_class=2, names=NAMES):
  """Writes `per_class` images of `shape` per class and split; image `i` of class `name` has the pixel values
  `pattern(shape, seed)`, seed from (split, class, i). Returns `{path: array}`."""
  written = {}
  for s, split in enumerate(splits):
    for c, name in enumerate(names):
      for i in range(per_class):
        array = pattern(shape, 100 * s + 10 * c + i)
        written[save(root / split / name / f"{i}{suffix}", array)] = array
  return written


@pytest.mark.parametrize("shape,suffix", [((6, 5), ".png"), ((6, 5, 3), ".png"), ((6, 5), ".bmp"), ((6, 5, 3), ".bmp")])
def test_lossless_folders_round_trip(tmp_path, shape, suffix):
  written = make_folder(tmp_path, shape=shape, suffix=suffix)
  folder = data.scan_image_folder(tmp_path)
  channels = 3 if len(shape) == 3 else 1
  assert folder.image_shape == (6, 5, channels) and folder.channels == channels
  source = data.ImageFolderSource(folder.test, data.resolve_image_size(folder), folder.channels)
  assert len(source) == len(folder.test) == 2 * len(NAMES)
  for i, (path, label) in enumerate(folder.test):
    image, y = source[i]
    assert image.dtype == np.uint8 and y.dtype == np.int32 and int(y) == label
    np.testing.assert_array_equal(image, written[path].reshape(6, 5, channels))


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPEG"])
def test_jpeg_decodes_within_its_error(tmp_path, suffix):
  array = smooth((12, 16, 3))
  image = data.decode_image(save(tmp_path / f"a{suffix}", array, quality=90))
  assert image.shape == (12, 16, 3) and image.dtype == np.uint8
  assert np.abs(image.astype(int) - array).mean() < 3  # measured: about 1 level at quality 90


@pytest.mark.parametrize("suffix", data.IMAGE_SUFFIXES)
def test_every_format_decodes(tmp_path, suffix):
  array = smooth((8, 10, 3))
  options = {".webp": {"lossless": True}, ".jpg": {"quality": 95}, ".jpeg": {"quality": 95}}.get(suffix, {})
  image = data.decode_image(save(tmp_path / f"a{suffix}", array, **options))
  assert image.shape == (8, 10, 3) and image.dtype == np.uint8
  # GIF keeps at most 256 colours; JPEG is lossy; the others give back exactly what was written
  bound = {".gif": 8, ".jpg": 3, ".jpeg": 3}.get(suffix, 0)
  assert np.abs(image.astype(int) - array).mean() <= bound


def test_modes_convert_to_grey_or_rgb(tmp_path):
  palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
  palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
  palette.save(tmp_path / "p.png")
  np.testing.assert_array_equal(
    data.decode_image(tmp_path / "p.png"), [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 255, 0]]]
  )
  rgba = pattern((3, 4, 4), 0)
  np.testing.assert_array_equal(data.decode_image(save(tmp_path / "rgba.png", rgba)), rgba[..., :3])
  grey_alpha = pattern((3, 4, 2), 1)
  np.testing.assert_array_equal(data.decode_image(save(tmp_path / "la.png", grey_alpha)), grey_alpha[..., :1])
  wide = np.array([[0, 257, 65535, 32896]], np.uint16)  # 16-bit grey, scaled to 0-255 (not clipped)
  np.testing.assert_array_equal(data.decode_image(save(tmp_path / "i16.png", wide))[..., 0], [[0, 1, 255, 128]])
  bits = np.array([[True, False]])
  np.testing.assert_array_equal(data.decode_image(save(tmp_path / "1.png", bits))[..., 0], [[255, 0]])
  grey = pattern((3, 4), 2)
  np.testing.assert_array_equal(data.decode_image(save(tmp_path / "g.png", grey), channels=3), np.stack([grey] * 3, -1))


def test_animated_gif_gives_its_first_frame(tmp_path):
  frames = [Image.fromarray(np.full((4, 5), value, np.uint8)) for value in (10, 200)]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  assert Image.open(tmp_path / "a.gif").n_frames == 2
  image = data.decode_image(tmp_path / "a.gif")  # GIF stores a palette: colour, whatever its colours
  assert image.shape == (4, 5, 3) and (image == 10).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size,shape", [(7, (7, 7)), ((3, 11), (3, 11)), ((40, 2), (40, 2))])
def test_resize_gives_exactly_that_shape(tmp_path, channels, image_size, shape):
  path = save(tmp_path / "a.png", smooth((9, 13, 3)))
  assert data.decode_image(path, image_size, channels).shape == (*shape, channels)


def test_resize_keeps_a_constant_image_constant(tmp_path):
  path = save(tmp_path / "a.png", np.full((20, 30, 3), 77, np.uint8))
  assert (data.decode_image(path, (5, 6)) == 77).all() and (data.decode_image(path, 64) == 77).all()


def test_class_order_is_the_sorted_folder_names(tmp_path):
  words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
  for digit, word in enumerate(words, 1):
    for split in ("train", "val"):
      save(tmp_path / split / word / "a.png", np.full((2, 2), digit, np.uint8))
  folder = data.scan_image_folder(tmp_path)
  assert folder.classes == tuple(sorted(words)) and folder.classes[:3] == ("eight", "five", "four")
  source = data.ImageFolderSource(folder.train, 2, 1)
  for i, (path, label) in enumerate(folder.train):
    assert folder.classes[label] == path.parent.name
    assert words.index(folder.classes[source[i][1]]) + 1 == source[i][0][0, 0, 0]
  assert [label for _, label in folder.train] == list(range(len(words)))


def test_test_folder_present_or_absent(tmp_path):
  make_folder(tmp_path / "two", splits=("train", "val"))
  folder = data.scan_image_folder(tmp_path / "two")
  assert folder.val == () and {p.parts[-3] for p, _ in folder.test} == {"val"}
  make_folder(tmp_path / "three", splits=("train", "val", "test"))
  folder = data.scan_image_folder(tmp_path / "three")
  assert {p.parts[-3] for p, _ in folder.val} == {"val"} and {p.parts[-3] for p, _ in folder.test} == {"test"}
  make_folder(tmp_path / "no_val", splits=("train", "test"))
  folder = data.scan_image_folder(tmp_path / "no_val")
  assert folder.val == () and len(folder.test) == 2 * len(NAMES)


def test_listing_is_sorted_ignores_other_files_and_searches_subfolders(tmp_path):
  make_folder(tmp_path, names=["cat", "dog"], per_class=3)
  (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
  (tmp_path / "train" / "cat" / ".hidden.png").write_text("not an image either")
  (tmp_path / "train" / "README").write_text("a file beside the class folders")
  (tmp_path / "train" / ".cache").mkdir()  # a hidden folder is not a class
  nested = save(tmp_path / "train" / "dog" / "more" / "x.PNG", pattern((6, 5), 0))
  folder = data.scan_image_folder(tmp_path)
  assert folder.classes == ("cat", "dog")
  assert folder.train == tuple(sorted(folder.train, key=lambda example: (example[1], example[0])))
  assert [p.name for p, _ in folder.train] == ["0.png", "1.png", "2.png", "0.png", "1.png", "2.png", "x.PNG"]
  assert (nested, 1) in folder.train and all(isinstance(p, pathlib.Path) for p, _ in folder.train)


def test_a_split_may_lack_classes(tmp_path):
  make_folder(tmp_path, splits=("train",))
  make_folder(tmp_path, splits=("val",), names=["five"])
  folder = data.scan_image_folder(tmp_path)
  assert {label for _, label in folder.test} == {NAMES.index("five")} and len(folder.classes) == len(NAMES)


def cut_in_half(path):
  path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def corrupt_middle(path):
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2 : len(raw) // 2 + 16] = b"\x55" * 16
  path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
  "suffix,damage,why",
  [
    (".jpg", cut_in_half, "cannot decode the image (truncated or corrupt"),
    (".png", cut_in_half, "cannot decode the image (truncated or corrupt"),
    # JPEG's entropy-coded data carries no checksum: corruption there decodes to wrong pixels, undetectable
    (".png", corrupt_middle, "cannot decode the image (truncated or corrupt"),
    (".png", lambda path: path.write_text("hello"), "not an image"),
    (".png", lambda path: path.unlink(), "cannot read the file (No such file"),
    (".png", lambda path: path.write_bytes(b""), "not an image"),
  ],
  ids=["truncated-jpeg", "truncated-png", "corrupt-png", "text-as-png", "missing", "empty"],
)
def test_bad_files_raise_an_image_error_naming_them(tmp_path, suffix, damage, why):
  path = save(tmp_path / "train" / "cat" / f"3{suffix}", pattern((32, 32, 3), 0))
  damage(path)
  with pytest.raises(data.ImageError, match="^" + str(path).replace("\\", "\\\\") + ": ") as info:
    data.decode_image(path)
  assert why in str(info.value) and isinstance(info.value, ValueError)
  source = data.ImageFolderSource([(path, 0)], 32, 3)
  with pytest.raises(data.ImageError, match=str(path)):
    source[0]


def test_a_file_that_is_no_image_fails_the_scan(tmp_path):
  make_folder(tmp_path)
  (tmp_path / "train" / "five" / "x.jpg").write_text("not an image")
  with pytest.raises(data.ImageError, match=f"{tmp_path / 'train' / 'five' / 'x.jpg'}: not an image"):
    data.scan_image_folder(tmp_path)


def test_bad_layouts_raise_value_errors_naming_the_folder(tmp_path):
  def expect(root, message):
    with pytest.raises(ValueError) as info:
      data.scan_image_folder(root)
    assert message in str(info.value), str(info.value)

  expect(tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: no such folder")
  (tmp_path / "no_train" / "val" / "a").mkdir(parents=True)
  expect(tmp_path / "no_train", f"{tmp_path / 'no_train'} has no train/ folder")
  make_folder(tmp_path / "no_val", splits=("train",))
  expect(tmp_path / "no_val", f"{tmp_path / 'no_val'} has neither val/ nor test/")
  make_folder(tmp_path / "empty_class")
  (tmp_path / "empty_class" / "train" / "six").mkdir()
  (tmp_path / "empty_class" / "train" / "six" / "notes.txt").write_text("")
  expect(tmp_path / "empty_class", f"{tmp_path / 'empty_class' / 'train' / 'six'} has no images (files ending in .jpg")
  make_folder(tmp_path / "extra_class", names=["five", "four"])
  make_folder(tmp_path / "extra_class", splits=("val",), names=["seven", "six"])
  expect(tmp_path / "extra_class", f"{tmp_path / 'extra_class' / 'val'} has classes that ")
  expect(tmp_path / "extra_class", "lacks: seven, six")
  for name in ("one", "two"):
    (tmp_path / "no_images" / "train" / name).mkdir(parents=True)
  expect(tmp_path / "no_images", f"{tmp_path / 'no_images' / 'train' / 'one'} has no images")
  make_folder(tmp_path / "flat_val", splits=("train",))
  save(tmp_path / "flat_val" / "val" / "0.png", pattern((6, 5), 0))
  expect(tmp_path / "flat_val", f"{tmp_path / 'flat_val' / 'val'} has no class folders")


def test_mixed_sizes_need_an_image_size(tmp_path):
  make_folder(tmp_path, shape=(6, 5))
  other = save(tmp_path / "val" / "four" / "big.png", pattern((9, 4), 0))
  folder = data.scan_image_folder(tmp_path)
  assert folder.image_shape is None
  with pytest.raises(ValueError, match="image_size") as info:
    data.resolve_image_size(folder)
  assert f"{folder.train[0][0]} is 6x5, {other} is 9x4" in str(info.value)
  assert data.resolve_image_size(folder, 8) == (8, 8) and data.resolve_image_size(folder, (3, 4)) == (3, 4)
  source = data.ImageFolderSource(folder.test, (3, 4), folder.channels)
  assert {source[i][0].shape for i in range(len(source))} == {(3, 4, 1)}


def test_one_colour_image_makes_the_folder_colour(tmp_path):
  make_folder(tmp_path, shape=(6, 5))
  save(tmp_path / "val" / "four" / "colour.png", pattern((6, 5, 3), 0))
  folder = data.scan_image_folder(tmp_path)
  assert folder.channels == 3 and folder.image_shape == (6, 5, 3)


@pytest.mark.parametrize("image_size", [0, (3,), (3, 4, 5), (2.5, 3), "8"])
def test_invalid_image_sizes_and_channels_are_refused(tmp_path, image_size):
  path = save(tmp_path / "a.png", pattern((4, 4), 0))
  with pytest.raises(ValueError, match="image_size must be"):
    data.decode_image(path, image_size)
  with pytest.raises(ValueError, match="channels must be"):
    data.decode_image(path, channels=2)


def test_no_file_handle_is_left_open(tmp_path):
  good = save(tmp_path / "good.png", pattern((8, 8, 3), 0))
  bad = save(tmp_path / "bad.png", pattern((32, 32, 3), 0))
  cut_in_half(bad)
  fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else pytest.skip("needs /proc")
  for _ in range(20):
    data.decode_image(good, 4)
    with pytest.raises(data.ImageError):
      data.decode_image(bad)
  assert set(os.listdir("/proc/self/fd")) == fds


def test_source_pickles_and_feeds_grain(tmp_path):
  make_folder(tmp_path, shape=(6, 5, 3), per_class=3)
  folder = data.scan_image_folder(tmp_path)
  source = data.ImageFolderSource(folder.train, data.resolve_image_size(folder), folder.channels)
  copy = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(copy[0][0], source[0][0])
  assert copy[0][1] == source[0][1] and len(copy) == len(source) == 15
  assert len(pickle.dumps(source)) < sum(map(len, source.paths)) + 500  # paths and labels only, no pixels
  batches = list(grain.MapDataset.source(source).shuffle(seed=0).batch(4).to_iter_dataset())
  assert [b[0].shape for b in batches] == [(4, 6, 5, 3)] * 3 + [(3, 6, 5, 3)]
  assert all(images.dtype == np.uint8 and labels.dtype == np.int32 for images, labels in batches)
  labels = np.concatenate([labels for _, labels in batches])
  assert sorted(labels.tolist()) == sorted(label for _, label in folder.train)
