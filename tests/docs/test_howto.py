"""The how-to pages run (tests/doc_pages.py says how)."""

import pytest

from tests import doc_pages


@pytest.mark.parametrize("page", doc_pages.pages_with_code("docs/howto"), ids=lambda page: page.name)
def test_page_runs(page, tmp_path):
  result = doc_pages.run_page(page, tmp_path)
  assert result.returncode == 0, result.stdout
