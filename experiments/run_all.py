"""Every literature study of `experiments/`, one after another, and a summary of their verdicts.

    python experiments/run_all.py --quick            # every study reduced: under 15 minutes on 2 cores
    python experiments/run_all.py                    # the full forms: regenerates experiments/results/
    python experiments/run_all.py --only pooling filters --data cifar10 --data-dir ~/data

Flags other than `--only` go to every study (see `studies.parser`). Writes `<out>/run_all.json`: each study's
duration and verdict.
"""

import argparse
import importlib
import json
import pathlib
import sys
import time

from tqdm.auto import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import studies  # noqa: E402  (the studies import it as a sibling module)

STUDIES = ("receptive_fields", "filters", "conv_vs_dense", "pooling", "relu_vs_tanh", "regularisation", "depth_skip")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--only", nargs="+", choices=STUDIES, default=STUDIES, help="run these studies only")
  args, rest = p.parse_known_args(argv)
  summary, started = {}, time.perf_counter()
  for name in tqdm(args.only, desc="studies"):
    tqdm.write(f"== {name}")
    results = importlib.import_module(name).main(rest)
    summary[name] = dict(seconds=results["seconds"], verdict=results["verdict"])
  out = studies.output_dir(studies.parser(__doc__).parse_args(rest))
  total = round(time.perf_counter() - started, 1)
  command = " ".join(["experiments/run_all.py", *(sys.argv[1:] if argv is None else argv)])
  (out / "run_all.json").write_text(json.dumps(dict(command=command, seconds=total, studies=summary), indent=1))
  for name, s in summary.items():
    print(f"{name:<18} {s['seconds']:>7.1f} s  {s['verdict']}")
  print(f"{'total':<18} {total:>7.1f} s; wrote {out / 'run_all.json'}")
  return summary


if __name__ == "__main__":
  main()
