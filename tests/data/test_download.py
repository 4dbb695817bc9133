"""Downloads against a loopback HTTP server: checksums, resumption, atomic writes, then loading."""

import gzip
import hashlib
import importlib
import http.server
import threading

import numpy as np
import pytest

from funconv import data

from tests.data.test_data import write_idx

download_module = importlib.import_module("funconv.data.download")  # the module, not the function


class Server(http.server.ThreadingHTTPServer):
  """Serves `files` (name -> bytes), honours `Range: bytes=N-` unless `ranges` is False, records requests."""

  def __init__(self, files, ranges=True):
    self.files, self.ranges, self.requests = files, ranges, []
    super().__init__(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(http.server.BaseHTTPRequestHandler):
  def do_GET(self):
    name = self.path.lstrip("/")
    self.server.requests.append((name, self.headers.get("Range")))
    if name not in self.server.files:
      self.send_error(404)
      return
    body, status = self.server.files[name], 200
    if self.server.ranges and self.headers.get("Range"):
      start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
      if start >= len(body):
        self.send_error(416)
        return
      body, status = body[start:], 206
    self.send_response(status)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, *args):
    pass


@pytest.fixture
def serve():
  servers = []

  def start(files, ranges=True):
    server = Server(files, ranges)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server

  yield start
  for server in servers:
    server.shutdown()
    server.server_close()


PAYLOAD = np.random.default_rng(0).bytes(3 << 20)  # three read blocks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_renames_into_place(tmp_path, serve):
  server = serve({"f.bin": PAYLOAD})
  path = data.download(server.url + "f.bin", tmp_path / "sub" / "f.bin", DIGEST)
  assert path.read_bytes() == PAYLOAD and data.sha256_of(path) == DIGEST
  assert not (tmp_path / "sub" / "f.bin.part").exists()
  data.download(server.url + "f.bin", path, DIGEST)  # already there: no second request
  assert server.requests == [("f.bin", None)]


def test_an_interrupted_download_resumes_from_its_partial_file(tmp_path, serve):
  server = serve({"f.bin": PAYLOAD})
  (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1234567])  # what a killed run left behind
  path = data.download(server.url + "f.bin", tmp_path / "f.bin", DIGEST)
  assert path.read_bytes() == PAYLOAD
  assert server.requests == [("f.bin", "bytes=1234567-")]


def test_a_complete_partial_file_is_verified_and_kept(tmp_path, serve):
  server = serve({"f.bin": PAYLOAD})
  (tmp_path / "f.bin.part").write_bytes(PAYLOAD)  # killed between the last write and the rename
  assert data.download(server.url + "f.bin", tmp_path / "f.bin", DIGEST).read_bytes() == PAYLOAD


def test_a_server_ignoring_ranges_restarts_the_file(tmp_path, serve):
  server = serve({"f.bin": PAYLOAD}, ranges=False)
  (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
  assert data.download(server.url + "f.bin", tmp_path / "f.bin", DIGEST).read_bytes() == PAYLOAD


def test_a_wrong_checksum_leaves_no_file(tmp_path, serve):
  server = serve({"f.bin": PAYLOAD[:-1] + b"x"})
  with pytest.raises(OSError, match="SHA-256"):
    data.download(server.url + "f.bin", tmp_path / "f.bin", DIGEST)
  assert list(tmp_path.iterdir()) == []


def test_network_errors_name_the_url(tmp_path, serve):
  server = serve({})
  with pytest.raises(OSError, match="HTTP 404"):
    data.download(server.url + "missing.bin", tmp_path / "f.bin", DIGEST)
  with pytest.raises(OSError, match="could not fetch"):
    data.download("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", DIGEST, timeout=5)


def test_load_with_download_fetches_the_missing_files(tmp_path, serve, monkeypatch):
  rng = np.random.default_rng(1)
  arrays = [
    rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, 5, dtype=np.uint8),
    rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, 3, dtype=np.uint8),
  ]
  files = {}
  for base, array in zip(data.sets.IDX_FILES, arrays):
    write_idx(tmp_path / "src", array, compress=True)
    files[base + ".gz"] = (tmp_path / "src").read_bytes()
  server = serve(files)
  monkeypatch.setitem(
    download_module.SOURCES,
    "mnist",
    (server.url, {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}),
  )
  ds = data.load("mnist", tmp_path / "mnist", download=True)
  np.testing.assert_array_equal(ds.y_train, arrays[1])
  assert gzip.decompress((tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:] == arrays[3].tobytes()
  assert len(server.requests) == 4


def test_every_source_has_a_sha256_for_every_file_the_reader_needs():
  for name in data.sets.IDX_SETS:
    assert set(download_module.SOURCES[name][1]) == {f + ".gz" for f in data.sets.IDX_FILES}
  assert set(download_module.SOURCES["cifar10"][1]) == {"cifar-10-python.tar.gz"}
  assert set(download_module.SOURCES["cifar100"][1]) == {"cifar-100-python.tar.gz"}
  for _, sums in download_module.SOURCES.values():
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in sums.values())
  with pytest.raises(ValueError, match="no download source"):
    data.fetch("digits", ".")
