"""The README and the guides in docs/ run (tests/doc_pages.py says how); the runner itself."""

import pytest

from tests import doc_pages


def test_code_blocks_are_found_with_their_lines():
  text = "intro\n```python\nx = 1\n```\n\n```bash\nls\n```\n  ```python\n  y = 2\n  ```\n"
  assert doc_pages.code_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\n")]


def test_a_failing_block_names_its_page_and_line(tmp_path):
  page = tmp_path / "page.md"
  page.write_text("# A page\n\n```python\nx = 1\n```\n\n```python\nassert x == 2, 'x is not 2'\n```\n")
  result = doc_pages.run_page(page, tmp_path)
  assert result.returncode != 0
  assert f'File "{page}", line 8' in result.stdout and "x is not 2" in result.stdout


def test_every_page_with_code_is_tested():
  tested = {page for folder in (".", "docs", "docs/tour", "docs/howto") for page in doc_pages.pages_with_code(folder)}
  assert tested == {page for page in doc_pages.PAGES if doc_pages.code_blocks(page.read_text())}


@pytest.mark.parametrize(
  "page", doc_pages.pages_with_code(".") + doc_pages.pages_with_code("docs"), ids=lambda page: page.name
)
def test_page_runs(page, tmp_path):
  result = doc_pages.run_page(page, tmp_path)
  assert result.returncode == 0, result.stdout
