"""The literature studies run end to end (slow: `-m slow`), reduced to their quick form with one seed."""

import json
import pathlib
import subprocess
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).parent.parent / "experiments"


@pytest.mark.slow
def test_every_study_runs_and_writes_results_and_figures(tmp_path):
  done = subprocess.run(
    [sys.executable, str(EXPERIMENTS / "run_all.py"), "--quick", "--seeds", "1", "--out", str(tmp_path)],
    capture_output=True,
    text=True,
    timeout=1800,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.loads((tmp_path / "run_all.json").read_text())
  sys.path.insert(0, str(EXPERIMENTS))
  from run_all import STUDIES

  assert list(summary["studies"]) == list(STUDIES)
  for name in STUDIES:
    results = json.loads((tmp_path / f"{name}.json").read_text())
    assert {"claim", "ours", "data", "spread", "verdict", "environment", "command"} <= set(results), name
    assert results["config"]["form"] == "quick" and results["verdict"] == summary["studies"][name]["verdict"]
    figures = sorted(tmp_path.glob(f"{name}*.png"))
    assert figures and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures), name
