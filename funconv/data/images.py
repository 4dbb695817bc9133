"""Image folders: the layout of torchvision's `ImageFolder` and of ImageNet, read with Pillow.

`scan_image_folder(DIR)` lists `DIR/train/<class>/*` and `DIR/val/<class>/*` (and `DIR/test/<class>/*` when present);
classes are the sorted names of the class folders of `train`, labels their indices. `decode_image` reads one file
as a uint8 `(H, W, C)` array; `ImageFolderSource` is one split as a random-access source of `(image, label)`
examples for grain. Every unreadable file raises an `ImageError` (a `ValueError`) whose message starts with its path.
"""

import os
import pathlib
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
"""The suffixes of the files read as images, compared case-insensitively (`.JPEG`, ImageNet's, counts): JPEG, PNG,
BMP, GIF and WebP, all of which Pillow decodes. Other files in a class folder are ignored.

Examples:
  >>> import funconv as fc
  >>> fc.data.IMAGE_SUFFIXES
  ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
  >>> "n01440764_18.JPEG".lower().endswith(fc.data.IMAGE_SUFFIXES)
  True
"""

# Grey modes decode to one channel; every other (palette, RGB, RGBA, CMYK, YCbCr...) to three.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N")


class ImageError(ValueError):
  """An image file that cannot be read or decoded: missing or unreadable, not an image, truncated or corrupt.

  The message starts with the file's path, then says why (`"data/train/cat/3.jpg: cannot decode the image
  (truncated or corrupt: ...)"`). A `ValueError`, so code that catches those catches it.

  Examples:
    >>> import pathlib
    >>> import funconv as fc
    >>> _ = pathlib.Path("notes.png").write_text("not an image")
    >>> fc.data.decode_image("notes.png")
    Traceback (most recent call last):
    ...
    funconv.data.images.ImageError: notes.png: not an image (Pillow cannot identify its format)
    >>> issubclass(fc.data.ImageError, ValueError)
    True
  """


def _why(err):
  if isinstance(err, UnidentifiedImageError):
    return "not an image (Pillow cannot identify its format)"
  if isinstance(err, OSError) and err.errno is not None:
    return f"cannot read the file ({err.strerror})"
  if isinstance(err, Image.DecompressionBombError):
    return f"too large to decode ({err})"
  return f"cannot decode the image (truncated or corrupt: {err})"


def _with_image(path, read):
  """`read(image)` of the image opened at `path`, the file closed after; every failure an `ImageError`. Pillow
  signals bad data with OSError, SyntaxError, ValueError or EOFError depending on the format."""
  try:
    with Image.open(path) as image:
      return read(image)
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
    raise ImageError(f"{path}: {_why(err)}") from err


def _header(path):
  """`((width, height), mode)` from the file's header, nothing decoded."""
  return _with_image(path, lambda image: (image.size, image.mode))


def _size(image_size):
  """`(height, width)` from an int (square) or a pair, checked."""
  size = (image_size,) * 2 if np.ndim(image_size) == 0 else tuple(image_size)
  if len(size) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in size):
    raise ValueError(f"image_size must be an int or a (height, width) pair of ints >= 1, got {image_size!r}")
  return int(size[0]), int(size[1])


def _converted(image, channels):
  if image.mode.startswith("I"):  # 16-bit grey: Pillow's convert("L") clips at 255 where it should scale
    image = Image.fromarray(((np.clip(np.asarray(image), 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8))
  return image.convert("L" if channels == 1 else "RGB")


def decode_image(path, image_size=None, channels=None):
  """The image in the file at `path` as a uint8 `(H, W, C)` NumPy array.

  Grey images (Pillow modes `"1"`, `"L"`, `"LA"`, 16-bit `"I;16"`, scaled to 0-255) decode to `C = 1`, all others
  (palette, RGB, RGBA, CMYK) to `C = 3`, `"RGB"`; alpha is dropped. Of an animated GIF, the first frame. The whole
  file is decoded, so a truncated one fails here (with Pillow's default `PIL.ImageFile.LOAD_TRUNCATED_IMAGES =
  False`; a program that sets it True asks Pillow to fill truncated images with grey instead).

  Args:
    path: the file, a `str` or `pathlib.Path`; its format is read from its content, not its suffix.
    image_size: None (default) keeps the image's own size; an int `S` resizes it to `(S, S)`, a pair
      `(height, width)` to that size, with Pillow's bilinear filter (antialiased when shrinking).
    channels: None (default) as above; 1 converts colour to grey (ITU-R 601-2 luma), 3 grey to colour.

  Returns:
    A uint8 array `(H, W, C)`, values 0-255: `H, W` the image's height and width, or `image_size`.

  Raises:
    ImageError: a missing or unreadable file, not an image, a truncated or corrupt one; the message starts with
      `path` and says which.
    ValueError: `channels` not None, 1 or 3; `image_size` not an int or a pair of ints >= 1.

  Examples:
    >>> import numpy as np
    >>> from PIL import Image
    >>> import funconv as fc
    >>> Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6)).save("grey.png")
    >>> image = fc.data.decode_image("grey.png")
    >>> image.shape, image.dtype, image[1, :, 0].tolist()
    ((4, 6, 1), dtype('uint8'), [6, 7, 8, 9, 10, 11])
    >>> fc.data.decode_image("grey.png", image_size=(2, 3), channels=3).shape
    (2, 3, 3)
    >>> fc.data.decode_image("grey.png", image_size=8).shape
    (8, 8, 1)
  """
  if channels not in (None, 1, 3):
    raise ValueError(f"decode_image: channels must be None, 1 or 3, got {channels!r}")
  size = None if image_size is None else _size(image_size)

  def read(image):
    image.load()  # decode everything now: a truncated file fails here, inside the error handling
    image = _converted(image, channels or (1 if image.mode in GREY_MODES else 3))
    if size is not None:
      image = image.resize(size[::-1], Image.Resampling.BILINEAR)
    array = np.array(image)
    return array.reshape(*array.shape[:2], -1)

  return _with_image(path, read)


class ImageFolder(NamedTuple):
  """The listing of an image folder, what `scan_image_folder` returns.

  Attributes:
    classes: the class names, a tuple of `str`: the sorted names of the class folders of `train/`. A label is
      an index into it.
    train: the training examples, a tuple of `(path, label)` pairs, `path` a `pathlib.Path` and `label` an
      int in `[0, len(classes))`, sorted by label, then path.
    val: the validation examples, from `val/` when `test/` exists, likewise; empty when there is no `test/` (or no
      `val/`): then hold out part of `train` to validate on.
    test: the test examples (from `test/`, or from `val/` without `test/`), likewise.
    image_shape: `(H, W, C)` when every image of the three splits is `H x W`, else None; `C` is `channels`.
    channels: 1 when every image is grey, else 3: the channels `decode_image` gives every image of the folder.

  Examples:
    >>> import pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> import funconv as fc
    >>> for path in ["shapes/train/square/a.png", "shapes/train/circle/b.png", "shapes/val/circle/c.png"]:
    ...   pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    ...   Image.fromarray(np.zeros((5, 7), np.uint8)).save(path)
    >>> folder = fc.data.scan_image_folder("shapes")
    >>> folder.classes, folder.image_shape, folder.channels, folder.val
    (('circle', 'square'), (5, 7, 1), 1, ())
    >>> [(path.name, label) for path, label in folder.train]
    [('b.png', 0), ('a.png', 1)]
  """

  classes: tuple
  train: tuple
  val: tuple
  test: tuple
  image_shape: tuple | None
  channels: int


def _image_files(folder):
  """The image files under `folder`, subfolders included (symbolic links followed, as torchvision does), hidden
  files and folders left out, sorted."""
  files = []
  for parent, subfolders, names in os.walk(folder, followlinks=True):
    subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    files += [pathlib.Path(parent, n) for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
  return sorted(files)


def _split(folder, labels):
  """The `(path, label)` pairs of the split `folder`, its class folders checked against `labels` (train's)."""
  names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
  if not names:
    raise ValueError(f"{folder} has no class folders: expected {folder}/<class>/<image files>")
  unknown = [name for name in names if name not in labels]
  if unknown:
    raise ValueError(f"{folder} has classes that {folder.parent / 'train'} lacks: {', '.join(unknown)}")
  examples = []
  for name in names:
    files = _image_files(folder / name)
    if not files:
      raise ValueError(f"{folder / name} has no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
    examples += [(path, labels[name]) for path in files]
  return tuple(examples)


def scan_image_folder(directory):
  """The classes and examples of an image folder in torchvision's `ImageFolder` (and ImageNet's) layout.

  The layout is `directory/train/<class>/*` and `directory/val/<class>/*`; a `directory/test/<class>/*` when
  present is the test split, and `val/` then the validation split; without `test/`, `val/` is the test split.
  Files whose names end in one of `IMAGE_SUFFIXES` (any case) are images, searched for in the subfolders of a
  class folder too; other files, and files and folders whose names start with `.`, are ignored. `val/` and
  `test/` may lack some of train's classes. Only the files' headers are read (for `image_shape` and `channels`):
  nothing is decoded.

  Args:
    directory: the folder, a `str` or `pathlib.Path`.

  Returns:
    An `ImageFolder`.

  Raises:
    ValueError: no `directory` or no `directory/train`; neither `val/` nor `test/`; a split folder without class
      folders; a class folder without images; a `val/` or `test/` class that `train/` lacks (the message names
      them). Each message names the folder.
    ImageError: a file whose header cannot be read (not an image, say); the message names it.

  Examples:
    >>> import pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> import funconv as fc
    >>> for split, count in [("train", 3), ("val", 1), ("test", 1)]:
    ...   for name in ["eight", "five"]:
    ...     pathlib.Path(f"numbers/{split}/{name}").mkdir(parents=True)
    ...     for i in range(count):
    ...       Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(f"numbers/{split}/{name}/{i}.png")
    >>> folder = fc.data.scan_image_folder("numbers")
    >>> folder.classes, len(folder.train), len(folder.val), len(folder.test), folder.image_shape
    (('eight', 'five'), 6, 2, 2, (4, 4, 3))
    >>> [(str(path), label) for path, label in folder.test]
    [('numbers/test/eight/0.png', 0), ('numbers/test/five/0.png', 1)]
  """
  root = pathlib.Path(directory)
  if not (root / "train").is_dir():
    layout = "expected DIR/train/<class>/<image files> and DIR/val/<class>/<image files>"
    raise ValueError(f"{root} has no train/ folder: {layout}" if root.is_dir() else f"{root}: no such folder")
  classes = tuple(sorted(e.name for e in os.scandir(root / "train") if e.is_dir() and not e.name.startswith(".")))
  labels = {name: label for label, name in enumerate(classes)}
  splits = {name: _split(root / name, labels) for name in ("train", "val", "test") if (root / name).is_dir()}
  if len(splits) == 1:
    raise ValueError(f"{root} has neither val/ nor test/: expected DIR/val/<class>/<image files>")
  val, test = (splits.get("val", ()), splits["test"]) if "test" in splits else ((), splits["val"])
  headers = [_header(path) for path, _ in splits["train"] + val + test]
  sizes = {size for size, _ in headers}
  channels = 1 if all(mode in GREY_MODES for _, mode in headers) else 3
  image_shape = (*sizes.pop()[::-1], channels) if len(sizes) == 1 else None
  return ImageFolder(classes, splits["train"], val, test, image_shape, channels)


def resolve_image_size(folder, image_size=None):
  """The `(height, width)` to decode a folder's images at: `image_size` when given, else their common size.

  Args:
    folder: an `ImageFolder`.
    image_size: None (default), an int `S` (`(S, S)`) or a `(height, width)` pair.

  Returns:
    `(height, width)`, two ints.

  Raises:
    ValueError: `image_size` None and the images of different sizes (the message names two files of different
      sizes and asks for `image_size`, `funconv-train --image-size N`); `image_size` not an int or a pair of ints
      >= 1.

  Examples:
    >>> import pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> import funconv as fc
    >>> for path, shape in [("mixed/train/a/0.png", (4, 6)), ("mixed/val/a/1.png", (5, 5))]:
    ...   pathlib.Path(path).parent.mkdir(parents=True)
    ...   Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    >>> folder = fc.data.scan_image_folder("mixed")
    >>> folder.image_shape is None, fc.data.resolve_image_size(folder, 32), fc.data.resolve_image_size(folder, (8, 6))
    (True, (32, 32), (8, 6))
    >>> fc.data.resolve_image_size(folder)
    Traceback (most recent call last):
    ...
    ValueError: the images have different sizes ...: mixed/train/a/0.png is 4x6, mixed/val/a/1.png is 5x5; ...
  """
  if image_size is not None:
    return _size(image_size)
  if folder.image_shape is not None:
    return folder.image_shape[:2]
  first, *rest = (path for split in (folder.train, folder.val, folder.test) for path, _ in split)
  (width, height), _ = _header(first)
  other = next(path for path in rest if _header(path)[0] != (width, height))
  (other_width, other_height), _ = _header(other)
  raise ValueError(
    f"the images have different sizes (height x width): {first} is {height}x{width}, {other} is "
    f"{other_height}x{other_width}; give the size to decode them at: image_size=N or (height, width) "
    f"(funconv-train --image-size N)"
  )


class ImageFolderSource:
  """One split of an image folder as a random-access source of `(image, label)` examples, for grain.

  Example `i` is `(decode_image(path_i, image_size, channels), label_i)`, decoded when asked for. The source
  holds only the paths, the labels, the size and the channels, so it pickles small and fast into grain's
  worker processes.

  Args:
    examples: `(path, label)` pairs, such as `ImageFolder.train`.
    image_size: the size every image is decoded at: an int `S` (`(S, S)`) or `(height, width)`; see
      `resolve_image_size`.
    channels: 1 or 3, every image's channels; `ImageFolder.channels`.

  Attributes:
    paths: the files, a tuple of `str`.
    labels: int32 NumPy array `(N,)`.
    image_size: `(height, width)`.
    channels: 1 or 3.

  Raises:
    ValueError: (at construction) `image_size` not an int or a pair of ints >= 1, `channels` not 1 or 3.
    ImageError: (when an example is read) its file cannot be decoded; the message starts with its path.

  Examples:
    >>> import pathlib, pickle
    >>> import numpy as np
    >>> from PIL import Image
    >>> import grain
    >>> import funconv as fc
    >>> for split, name in [("train", "cat"), ("train", "dog"), ("val", "dog")]:
    ...   pathlib.Path(f"pets/{split}/{name}").mkdir(parents=True, exist_ok=True)
    ...   for i in range(4):
    ...     Image.fromarray(np.full((6, 6, 3), 10 * i, np.uint8)).save(f"pets/{split}/{name}/{i}.png")
    >>> folder = fc.data.scan_image_folder("pets")
    >>> source = fc.data.ImageFolderSource(folder.train, fc.data.resolve_image_size(folder), folder.channels)
    >>> image, label = source[5]
    >>> len(source), image.shape, image.dtype, int(image[0, 0, 0]), label, label.dtype
    (8, (6, 6, 3), dtype('uint8'), 10, np.int32(1), dtype('int32'))
    >>> int(pickle.loads(pickle.dumps(source))[5][0][0, 0, 0])
    10
    >>> batches = grain.MapDataset.source(source).shuffle(seed=0).batch(4).to_iter_dataset()
    >>> [(images.shape, labels.shape) for images, labels in batches]
    [((4, 6, 6, 3), (4,)), ((4, 6, 6, 3), (4,))]
  """

  def __init__(self, examples, image_size, channels):
    if channels not in (1, 3):
      raise ValueError(f"ImageFolderSource: channels must be 1 or 3, got {channels!r}")
    self.paths = tuple(str(path) for path, _ in examples)
    self.labels = np.array([label for _, label in examples], np.int32)
    self.image_size = _size(image_size)
    self.channels = channels

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    return decode_image(self.paths[index], self.image_size, self.channels), self.labels[index]

  def __repr__(self):
    return f"ImageFolderSource({len(self)} images, image_size={self.image_size}, channels={self.channels})"
