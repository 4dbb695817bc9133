"""Downloads of the standard data set files: SHA-256 checked, resumable, written atomically.

Each file is fetched into `<name>.part` beside its destination, resuming from the bytes already
there (an HTTP `Range` request), and renamed into place only once its SHA-256 matches the
published sum, so an interrupted or corrupted download never leaves a file the readers would
take for the real one.
"""

import hashlib
import os
import pathlib
import urllib.error
import urllib.request

# Published SHA-256 sums (the same ones torchvision, Keras and TFDS check) and where to fetch.
SOURCES = {
  "mnist": (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    {
      "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
      "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
      "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
      "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
  ),
  "fashion_mnist": (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {
      "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
      "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
      "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
      "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
  ),
  "kmnist": (
    "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    {
      "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
      "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
      "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
      "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
  ),
  "cifar10": (
    "https://www.cs.toronto.edu/~kriz/",
    {
      "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
  ),
  "cifar100": (
    "https://www.cs.toronto.edu/~kriz/",
    {
      "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    },
  ),
}
_BLOCK = 1 << 20


def sha256_of(path) -> str:
  """The SHA-256 of a file's bytes, read in 1 MiB blocks.

  Args:
    path: the file, a `str` or `pathlib.Path`.

  Returns:
    The digest as 64 lowercase hexadecimal characters (`hashlib`'s `hexdigest()`).

  Raises:
    OSError: the file cannot be read (`FileNotFoundError` where it is missing).

  Examples:
    >>> import pathlib
    >>> import funconv as fc
    >>> _ = pathlib.Path("hello.txt").write_bytes(b"hello")
    >>> fc.data.sha256_of("hello.txt")
    '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
  """
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(_BLOCK):
      digest.update(block)
  return digest.hexdigest()


def download(url: str, path, sha256: str, timeout: float = 60.0) -> pathlib.Path:
  """Fetch `url` to `path` unless it is there already; check its SHA-256; return `path`.

  Bytes go to `path + ".part"`; a `.part` left by an interrupted run is resumed with an HTTP
  `Range` request (or restarted when the server ignores it). Only a file whose SHA-256 equals
  `sha256` is renamed to `path` (atomic on POSIX). A file already at `path` is returned as it is,
  without being checked or fetched. Missing parent directories are created.

  Args:
    url: what `urllib.request.urlopen` opens: `https://`, `http://` or `file://`.
    path: the destination, a `str` or `pathlib.Path`.
    sha256: the expected SHA-256, 64 hexadecimal characters (either case; `sha256_of` gives lowercase).
    timeout: seconds to wait for the server (default 60).

  Returns:
    `path` as a `pathlib.Path`.

  Raises:
    OSError: the download's SHA-256 differs from `sha256` (the partial file is deleted); an HTTP
      error; a network failure or timeout (the `.part` is kept for the next call to resume). The
      message names the URL and the destination.

  Examples:
    >>> import pathlib
    >>> import funconv as fc
    >>> source = pathlib.Path("source.bin"); _ = source.write_bytes(b"funconv")
    >>> digest = fc.data.sha256_of(source)
    >>> fc.data.download(source.resolve().as_uri(), "data/copy.bin", digest).as_posix()   # file:// needs no network
    'data/copy.bin'
    >>> pathlib.Path("data/copy.bin").read_bytes()
    b'funconv'
    >>> fc.data.download(source.resolve().as_uri(), "data/bad.bin", "0" * 64)
    Traceback (most recent call last):
    OSError: download: file://.../source.bin has SHA-256 a19f...; deleted the download
    >>> sorted(p.name for p in pathlib.Path("data").iterdir())
    ['copy.bin']
  """
  path = pathlib.Path(path)
  if path.exists():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(path.name + ".part")
  offset = partial.stat().st_size if partial.exists() else 0
  request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      resumed = offset > 0 and response.status == 206
      with open(partial, "ab" if resumed else "wb") as f:
        while block := response.read(_BLOCK):
          f.write(block)
        f.flush()
        os.fsync(f.fileno())
  except urllib.error.HTTPError as error:
    if error.code != 416 or not offset:  # 416: the range starts at the end, the .part is whole
      raise OSError(f"download: {url} answered HTTP {error.code} ({error.reason}); {path} not written") from error
  except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
    raise OSError(
      f"download: could not fetch {url} ({error}); {partial} keeps the bytes received so far, "
      f"and the next call resumes from them; or place the file at {path} yourself"
    ) from error
  actual = sha256_of(partial)
  if actual != sha256.lower():
    partial.unlink()
    raise OSError(f"download: {url} has SHA-256 {actual}, expected {sha256}; deleted the download")
  os.replace(partial, path)
  return path


def fetch(name: str, data_dir) -> list[pathlib.Path]:
  """Download the standard files of data set `name` into `data_dir` (those not already there).

  Each file is fetched with `download` from the data set's published source and checked against its
  published SHA-256 (the module's `SOURCES` holds the URLs and sums). Files already in `data_dir` are kept
  as they are, unchecked; so a call with every file there needs no network.

  Args:
    name: `"mnist"`, `"fashion_mnist"`, `"kmnist"` (four gzipped IDX files each), `"cifar10"` or
      `"cifar100"` (one python-pickle archive each).
    data_dir: the directory, a `str` or `pathlib.Path`; created where missing.

  Returns:
    The files' paths, a list of `pathlib.Path`, in `SOURCES` order.

  Raises:
    ValueError: an unknown `name`.
    OSError: a download failed or a file's SHA-256 differs (see `download`).

  Examples:
    >>> import funconv as fc
    >>> fc.data.fetch("imagenet", "data")
    Traceback (most recent call last):
    ValueError: fetch: no download source for 'imagenet'; expected one of mnist, fashion_mnist, kmnist, ...

    With network access, `fc.data.fetch("mnist", "data")` places the four MNIST files in `data/`, and
    `fc.data.idx_dataset("data")` reads them.
  """
  if name not in SOURCES:
    raise ValueError(f"fetch: no download source for {name!r}; expected one of {', '.join(SOURCES)}")
  base, files = SOURCES[name]
  return [download(base + file, pathlib.Path(data_dir) / file, digest) for file, digest in files.items()]
