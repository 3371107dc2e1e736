"""The report's generated sentences: the trade-offs against the reference strategy, caveats about how the jobs
ran, and what a hyper-parameter search found. Every number comes from the tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from ftcompare.report.paired import COLUMNS, REFERENCE
from ftcompare.report.records import SETTING, parse_overrides, sweep_of
from ftcompare.report.tables import pareto_front
from ftcompare.resume import command_overrides


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.3g}%" if whole else "n/a"


# Tensor memory (one step, by category) is the comparable figure; older runs have only the process figures.
_MEMORY = {
    "tensor_memory_mib": "training memory (tensors)",
    "train_memory_mb": "training memory",
    "peak_memory_mb": "peak memory",
}


def reading(best: pd.DataFrame, baseline_test: float | None = None, paired: pd.DataFrame | None = None) -> list[str]:
    """Sentences on the trade-offs, every number taken from the best-per-strategy table; with `baseline_test`
    (TF-IDF's test accuracy on the same split) where each strategy stands against it; a verdict last. With
    `paired` (paired.paired_table) a difference is judged by the paired test on the shared test examples."""
    paired = paired if paired is not None else pd.DataFrame(columns=COLUMNS)
    sentences = []
    memory = next(column for column in _MEMORY if best[f"{column}_mean"].notna().all() or column == "peak_memory_mb")
    for _, group in best.groupby(SETTING, dropna=False, sort=False):
        group = group.set_index("strategy")
        reference = REFERENCE if REFERENCE in group.index else group["val_acc_mean"].idxmax()  # chosen on validation
        ref = group.loc[reference]
        here = paired[(paired[SETTING] == ref[SETTING]).all(axis=1)]  # the tests of this setting's runs
        varying = [column for column in SETTING if best[column].nunique(dropna=False) > 1]
        prefix = f"[{', '.join(str(ref[column]) for column in varying)}] " if varying else ""
        if "(" in ref["split"]:  # marked by records._split_label
            sliced = ref["split"].split("(", 1)[1].rstrip(")")
            sentences.append(
                f"{prefix}these runs were sliced for a look ({sliced}): no conclusions are drawn from them."
            )
            continue
        for name, row in group.iterrows():
            if name == reference:
                continue
            test = _paired(here, name, reference)
            noise = _paired_clause(test) if test is not None else _spread_clause(row, ref)
            batches = row["batch_size"], ref["batch_size"]  # a memory ratio across batch sizes is mostly the batch
            batch = f" at batch {batches[0]} vs {batches[1]}" if batches[0] != batches[1] else ""
            sentences.append(
                f"{prefix}{name} reaches {_pct(row['test_acc_mean'], ref['test_acc_mean'])} of {reference}'s test"
                f" accuracy ({row['test_acc_mean']:.3f} vs {ref['test_acc_mean']:.3f}; {noise}) with"
                f" {_pct(row['trainable_params_mean'], ref['trainable_params_mean'])} of its trainable parameters,"
                f" {_pct(row[f'{memory}_mean'], ref[f'{memory}_mean'])} of its {_MEMORY[memory]}{batch} and"
                f" {_pct(row['fit_time_s_mean'], ref['fit_time_s_mean'])} of its fit time."
            )
        analytic = [name for name, method in group["memory_method"].items() if "analytic" in str(method)]
        if memory == "tensor_memory_mib" and analytic:
            sentences.append(
                f"{prefix}the tensor memory of {', '.join(analytic)} is the analytic count (torch's MemTracker was"
                " missing): it leaves out tensors that live only in the forward pass, most of what a frozen backbone"
                " or gradual's first stage hold, so it understates them."
            )
        for column, what in [("fit_time_s_mean", "fastest"), (f"{memory}_mean", f"leanest in {_MEMORY[memory]}")]:
            name = group[column].idxmin()
            sentences.append(f"{prefix}{what}: {name} ({group.loc[name, column]:,.0f} {_unit(column)}).")
        on_front = pareto_front(group["fit_time_s_mean"], group["test_acc_mean"])
        front = [name for name, on in zip(group.index, on_front, strict=True) if on]
        sentences.append(f"{prefix}on the accuracy/time Pareto front: {', '.join(front)}.")
        n_test, acc = _test_size(ref["split"]), ref["test_acc_mean"]
        if n_test:
            sentences.append(
                f"{prefix}every run is scored on the same {n_test} test examples: their sampling error"
                f" (±{math.sqrt(acc * (1 - acc) / n_test):.3f} at accuracy {acc:.3f}) is not in the spread over seeds."
            )
        if baseline_test is not None and len(best[SETTING].drop_duplicates()) == 1:
            above = ", ".join(f"{n} {d:+.3f}" for n, d in (group["test_acc_mean"] - baseline_test).items())
            sentences.append(
                f"against TF-IDF + logistic regression on the same split (test {baseline_test:.3f}, whole review): "
                f"{above}."
            )
        sentences.append(f"{prefix}{_verdict(group, memory, here)}")
    return sentences


def _paired(paired: pd.DataFrame, name: str, other: str) -> pd.Series | None:
    """The paired test of `name` against `other`, if the table has it."""
    rows = paired[(paired["strategy"] == name) & paired["against"].str.startswith(f"{other} (")]
    return rows.iloc[0] if not rows.empty else None


def _paired_clause(test: pd.Series) -> str:
    return (
        f"paired on {test['examples']} test examples x {test['seeds']} seed(s): {test['difference']:+.3f},"
        f" 95% interval [{test['low']:+.3f}, {test['high']:+.3f}]: {test['reading']}"
    )


def _spread_clause(row: pd.Series, ref: pd.Series) -> str:
    """Without per-example predictions: the difference against two standard errors over seeds."""
    diff = row["test_acc_mean"] - ref["test_acc_mean"]
    se = math.hypot(_se(row), _se(ref))
    if not math.isnan(se) and abs(diff) <= 2 * se:
        return f"the difference ({diff:+.3f}) is within two standard errors over seeds"
    spread = " from one seed each, no spread to judge it by" if math.isnan(se) else f", two SE {2 * se:.3f}"
    return f"a difference of {diff:+.3f}{spread}"


def _verdict(group: pd.DataFrame, memory: str, paired: pd.DataFrame) -> str:
    """The best strategy, and the leanest and the quickest of those level with it. With paired tests: the best
    on validation, and level means the paired interval against it includes 0. Without: the most accurate on
    test, and level means within two standard errors over seeds, at least 0.01."""
    best_val = group["val_acc_mean"].idxmax()
    tests = {name: _paired(paired, name, best_val) for name in group.index if name != best_val}
    if all(t is not None for t in tests.values()) and tests:
        top = best_val
        close = group.loc[[top, *(n for n, t in tests.items() if t["reading"] != "behind")]]
        parts = [f"verdict: best on validation {top} (test {group.loc[top, 'test_acc_mean']:.3f})"]
        level = [n for n, t in tests.items() if t["reading"] == "level"]
        ahead = [n for n, t in tests.items() if t["reading"] == "ahead"]
        parts.append(f"level with it on the paired test: {', '.join(level) or 'none'}")
        if ahead:
            parts.append(f"ahead of it on test: {', '.join(ahead)}")
        reach = "not behind it on the paired test counts as close"
    else:
        top = group["test_acc_mean"].idxmax()
        se = _se(group.loc[top])
        margin = 0.01 if math.isnan(se) else max(0.01, 2 * se)
        close = group[group["test_acc_mean"] >= group.loc[top, "test_acc_mean"] - margin]
        parts = [f"verdict: most accurate {top} ({group.loc[top, 'test_acc_mean']:.3f})"]
        reach = f"within {margin:.3f} of the best counts as close"
    for column, need in ((f"{memory}_mean", "memory"), ("fit_time_s_mean", "time")):
        pick = close[column].idxmin()
        if pick != top:
            parts.append(
                f"if {need} matters, {pick} ({close.loc[pick, 'test_acc_mean']:.3f}, {close.loc[pick, column]:,.0f}"
                f" vs {group.loc[top, column]:,.0f} {_unit(column)})"
            )
    return "; ".join(parts) + f" ({reach})."


def sharing_caveats(runs: pd.DataFrame) -> list[str]:
    """What the launcher did to the cost figures: jobs that ran in a process used by earlier jobs (its CPU
    resident peak carries what they left behind), and jobs that ran at the same time on one machine."""
    ok = runs[runs["status"] == "ok"].dropna(subset=["pid"])
    lines = []
    reused = ok[(ok["device"] == "cpu") & (ok["jobs_before"] > 0)]
    if not reused.empty:
        lines.append(
            f"{_jobs(reused)} ran in a process that had run earlier jobs, so their CPU peak memory also holds"
            " what those left behind; training memory (the peak above the level at fit start) is each job's own."
        )
    for host, group in ok.groupby("host"):
        starts, ends = group["started"].to_numpy(), group["ended"].to_numpy()
        overlaps = (starts[:, None] < ends[None, :]) & (starts[None, :] < ends[:, None])
        together = group[overlaps.sum(axis=1) > 1]  # each job overlaps itself
        if not together.empty:
            threads = ", ".join(str(int(t)) for t in sorted(together["torch_threads"].unique()))
            lines.append(
                f"{_jobs(together)} ran at the same time on {host} (torch threads per job: {threads}), sharing"
                " its cores: compare their times with each other, not with jobs that ran alone."
            )
    return lines


def _jobs(runs: pd.DataFrame) -> str:
    """`Job 3`, `Jobs 1, 3, 5–9`; in a merged report `Jobs 2 of a; 1, 3 of b` (each sweep numbers its own), sweeps
    in the order they were merged. Runs of three or more job numbers are ranges: a 72-run grid stays one line."""
    sweeps = runs["sweep"].map(lambda s: sweep_of(Path(s)).name) if "sweep" in runs else pd.Series("", runs.index)
    parts = []
    for sweep, group in runs.groupby(sweeps, sort=False):
        numbers = _ranges(sorted(int(j) for j in group["job"]))
        parts.append(f"{numbers} of {sweep}" if sweep else numbers)
    return ("Job " if len(runs) == 1 else "Jobs ") + "; ".join(parts)


def _ranges(numbers: list[int]) -> str:
    """`1, 2, 4–7`: consecutive numbers, three or more, as a range."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs)


def _test_size(split: str) -> int | None:
    """The test size from a `train/val/test seed S` split label; None where the test was cut short."""
    if "limited" in split:
        return None
    try:
        return int(split.split()[0].split("/")[2])
    except (IndexError, ValueError):
        return None


def _se(row: pd.Series) -> float:
    return row["test_acc_std"] / math.sqrt(row["seeds"]) if row["seeds"] > 1 else math.nan


def _unit(column: str) -> str:
    return "s" if "time" in column else "MiB"


def search_result(sweep_dir: Path, runs: pd.DataFrame) -> list[str]:
    """What an Optuna search (hparams_search=...) found, from the sweeper's optimization_results.yaml,
    with the command that trains its best trial again."""
    results_file = sweep_dir / "optimization_results.yaml"
    if not results_file.is_file():
        return []
    results = OmegaConf.to_container(OmegaConf.load(results_file))
    if "best_params" not in results:  # a multi-objective study: its Pareto front is in the file
        return [f"Optuna's Pareto-optimal trials are in `{results_file.name}`."]
    wanted = {k: str(v) for k, v in results["best_params"].items()}
    finished = int((runs["status"] == "ok").sum())
    lines = [
        f"Optuna study: {finished} of {len(runs)} trials finished; best val acc {results['best_value']:.4f} with "
        + ", ".join(f"{k}={v}" for k, v in wanted.items())
        + "."
    ]
    best = [run for run in runs.itertuples() if wanted.items() <= parse_overrides(run.overrides).items()]
    if best:
        run = best[0]
        hydra_cfg = OmegaConf.load(sweep_dir / run.dir / ".hydra" / "hydra.yaml").hydra
        task = [o for o in command_overrides(list(hydra_cfg.overrides.task)) if not o.startswith("hparams_search=")]
        if not any(o.startswith("strategy=") for o in task):  # chosen by the search config
            task.insert(0, f"strategy={hydra_cfg.runtime.choices.strategy}")
        lines += [
            f"Best trial: job {run.job} (`{run.dir}`), lr {run.lr:.3g}, test acc {run.test_acc:.4f}.",
            f"Train it again: `python train.py {' '.join(task)}`",
        ]
    return lines
