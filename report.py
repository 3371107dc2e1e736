"""Report a sweep: `python report.py [SWEEP_DIR]` (default: the newest folder under multirun/).

Writes results.csv, summary.md, the trade-off PNGs and report.html into the sweep folder and prints
the summary. Runs by itself at the end of every multirun; this re-runs it by hand, e.g. on a sweep
where some jobs failed or that is still running.
"""

import argparse
from pathlib import Path

from ftcompare.errors import bad_input_exits
from ftcompare.report import build_report, newest_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a multirun folder (default: the newest one)")
    parser.add_argument("--root", type=Path, default=Path("multirun"), help="where to look for the newest sweep")
    args = parser.parse_args()
    with bad_input_exits(FileNotFoundError):
        report = build_report(args.sweep_dir or newest_sweep(args.root))
    paths = report.write()
    print(report.terminal())
    print("\nwritten: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
