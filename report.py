"""Report a sweep: `python report.py [SWEEP_DIR]` (default: the newest folder under multirun/).

Writes results.csv, summary.md, the PNGs and report.html into the sweep folder and prints the summary.
Runs by itself at the end of every multirun; this re-runs it by hand, e.g. on a sweep where some jobs
failed or that is still running. Several folders are merged into one report (chunks of one grid, sweeps
from other days or machines): `python report.py A B --out DIR`.
"""

import argparse
from pathlib import Path

from ftcompare.errors import bad_input_exits
from ftcompare.report.page import build_report
from ftcompare.report.records import newest_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="*", type=Path, help="multirun folders (default: the newest one)")
    parser.add_argument("--root", type=Path, default=Path("multirun"), help="where to look for the newest sweep")
    parser.add_argument("--out", type=Path, help="where the report of several merged sweeps goes")
    args = parser.parse_args()
    with bad_input_exits(FileNotFoundError):
        report = build_report(*(args.sweep_dirs or [newest_sweep(args.root)]), out=args.out)
    report.write()
    print(report.terminal())


if __name__ == "__main__":
    main()
