"""`python -m funconv`: the main job, `funconv-train` with its defaults (a small CNN on the embedded digits)."""

from funconv.train.__main__ import main

if __name__ == "__main__":
  main()
