"""`make bench`: training throughput of each strategy, ours vs Hugging Face Trainer, on this machine.

python bench.py                                  # the strategies of experiment=compare, default config
python bench.py --strategies full lora -- model.attention_dropout=0.0
python bench.py --ops --strategies full lora     # where a step's time goes, op by op, on the same batches
"""

import argparse
from datetime import datetime
from pathlib import Path

from ftcompare.benchmark import run, study_strategies
from ftcompare.benchmark.loops import Bench
from ftcompare.benchmark.ops import run_ops
from ftcompare.strategies import names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to both loops, e.g. data.batch_size=32")
    parser.add_argument("--strategies", nargs="+", choices=names(), default=study_strategies())
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from the timing (>= 1)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per strategy and loop")
    parser.add_argument("--eval-samples", type=int, default=512)
    parser.add_argument("--no-trainer", action="store_true", help="time our loop only")
    parser.add_argument("--ops", action="store_true", help="per-op time of a step (torch.profiler), per strategy")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/bench") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    )
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    if args.ops:
        table = run_ops(Bench(args.overrides, args.strategies, args.warmup, args.steps), args.warmup, args.steps)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ops.md").write_text(table)
        print(f"{table}written to {args.out}/ops.md")
        return
    print(
        run(args.overrides, args.strategies, args.warmup, args.steps, args.eval_samples, not args.no_trainer, args.out)
    )
    print(f"written to {args.out}/bench.md")


if __name__ == "__main__":  # the benchmark's worker processes import this file
    main()
