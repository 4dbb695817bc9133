"""The main job (`python -m funconv`) trains on the embedded digits and learns."""
import sys

from funconv import __main__ as main_job


def test_main_job_trains_a_cnn_on_digits(capsys, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["funconv", "--epochs", "3"])
  main_job.main()
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith("final test accuracy:")
  assert float(last.split()[-1]) > 0.9
