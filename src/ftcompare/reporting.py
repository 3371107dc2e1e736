"""Per-run records (metrics.json) and the sweep report built from them.

A sweep folder holds one Hydra job folder per run. `build_report` turns it into `results.csv` (one row
per run, failed runs included), `summary.md` (mean ± std over seeds per configuration, the best
configuration per strategy, a generated reading), trade-off plots and one self-contained HTML page.
Runs are only averaged together when everything but the seed is the same, and never across
different models, data or splits.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ftcompare.config import command_overrides, register_resolvers

log = logging.getLogger(__name__)

# results.csv column -> where it lives in metrics.json
MEASURED = {
    "val_acc": ("val", "val/acc"),
    "test_acc": ("test", "test/acc"),
    "test_f1": ("test", "test/f1"),
    "test_auroc": ("test", "test/auroc"),
    "fit_time_s": ("cost", "perf/fit_time_s"),
    "epoch_time_s": ("cost", "perf/mean_epoch_time_s"),
    "train_samples_per_s": ("cost", "perf/train_samples_per_s"),
    "peak_memory_mb": ("cost", "perf/peak_memory_mb"),
    "train_memory_mb": ("cost", "perf/train_memory_mb"),
    "trainable_params": ("cost", "params/trainable"),
    "total_params": ("cost", "params/total"),
    "trainable_pct": ("cost", "params/trainable_pct"),
    "checkpoint_mb": ("cost", "checkpoint_size_mb"),
}
# results.csv columns from metrics.json's `process`: where and when a job ran (see _sharing_caveats).
PROCESS = ("host", "pid", "jobs_before", "torch_threads", "started", "ended")
# What makes two runs comparable; the configuration adds the knobs a sweep varies, all but the seed.
SETTING = ["model", "data", "split", "max_length"]
CONFIG = ["strategy", "lr", "batch_size", "max_epochs", "variant"]
AGGREGATED = list(MEASURED)
# Overrides shown in a column of their own rather than in `variant`.
OWN_COLUMNS = {
    *("seed", "strategy", "optimizer.lr", "lr_multiplier", "data.batch_size", "trainer.max_epochs"),
    *("model", "model.name_or_path", "data", "data.max_length", "data.split_seed"),
    *("data.train_size", "data.val_size", "data.test_size"),
}
# Config choices that shape a whole sweep rather than one run: not part of a run's configuration.
SWEEP_CHOICES = ("experiment=", "hparams_search=")
# Summary table: label, results.csv column, format.
DISPLAYED = [
    ("test acc", "test_acc", "{:.4f}"),
    ("test F1", "test_f1", "{:.4f}"),
    ("test AUROC", "test_auroc", "{:.4f}"),
    ("best val acc", "val_acc", "{:.4f}"),
    ("fit time (s)", "fit_time_s", "{:.0f}"),
    ("s / epoch", "epoch_time_s", "{:.0f}"),
    ("train samples/s", "train_samples_per_s", "{:.1f}"),
    ("peak memory (MiB)", "peak_memory_mb", "{:.0f}"),
    ("training memory (MiB)", "train_memory_mb", "{:.0f}"),
    ("trainable params", "trainable_params", "{:,.0f}"),
    ("trainable %", "trainable_pct", "{:.2f}"),
    ("checkpoint (MiB)", "checkpoint_mb", "{:.0f}"),
]
# The one line a run prints when it ends.
SUMMARY_LINE = {
    *("test acc", "test F1", "best val acc"),
    *("fit time (s)", "train samples/s", "training memory (MiB)", "trainable %"),
}
SAME_FOR_EVERY_SEED = ("trainable_params", "trainable_pct", "checkpoint_mb")
HEADERS = {"batch_size": "batch size", "max_epochs": "epochs", "max_length": "max length"}
# Trade-off plots: x column, axis label, log scale.
TRADEOFFS = [
    ("fit_time_s", "fit time (s)", False),
    ("train_memory_mb", "training memory (MiB): peak above the level at fit start", False),
    ("trainable_params", "trainable parameters", True),
]


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated file."""
    write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write to a temp file in the same folder, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def summary_line(record: dict[str, Any]) -> str:
    """One human-readable line per run for the terminal."""
    parts = []
    for label, column, fmt in DISPLAYED:
        section, key = MEASURED[column]
        if label in SUMMARY_LINE and record[section].get(key) is not None:
            parts.append(f"{label} {fmt.format(record[section][key])}")
    return f"[{record['strategy']}] " + " | ".join(parts)


# ---------------------------------------------------------------- collecting runs


def _select(cfg: DictConfig, key: str) -> Any:
    """A config value, or None where it is missing or only resolvable inside the run."""
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _model_name(cfg: DictConfig, choice: str | None) -> str:
    """The config group choice for embedded presets, else the hub name or path exactly as given."""
    raw = OmegaConf.to_container(cfg.model, resolve=False).get("name_or_path", "")
    if not isinstance(raw, str) or raw.startswith("${"):
        return choice or "?"
    return raw


def _split_label(cfg: DictConfig) -> str:
    """`train/val/test seed S`, marked when the run evaluated only part of the splits (debug limits)."""
    sizes = "/".join(str(_select(cfg, f"data.{k}_size")) for k in ("train", "val", "test"))
    limited = _select(cfg, "trainer.fast_dev_run") or any(
        _select(cfg, f"trainer.limit_{k}_batches") not in (None, 1.0) for k in ("train", "val", "test")
    )
    return f"{sizes} seed {_select(cfg, 'data.split_seed')}" + (" (limited batches)" if limited else "")


def _failure(job_dir: Path) -> tuple[str, str]:
    """Status and reason of a run without metrics.json: what it wrote to error.json (`failed`,
    `interrupted`), else the last error it logged, else `incomplete`."""
    error_file = job_dir / "error.json"
    if error_file.is_file():
        error = json.loads(error_file.read_text())
        return error["status"], error["error"]
    errors = []
    for logfile in job_dir.glob("*.log"):
        lines = logfile.read_text(errors="replace").splitlines()
        errors += [line.split(" - ", 1)[-1] for line in lines if "ERROR" in line]
    if errors:
        return "failed", errors[-1]
    return "incomplete", "no metrics.json and no error logged: still running, or killed"


def collect_runs(sweep_dir: Path) -> pd.DataFrame:
    """One row per Hydra job under `sweep_dir` (ok, failed or incomplete), in job order."""
    register_resolvers()  # the run configs use ${ftc.*:} interpolations
    rows = []
    for config_file in sorted(Path(sweep_dir).rglob(".hydra/config.yaml")):
        job_dir = config_file.parent.parent
        cfg = OmegaConf.load(config_file)
        hydra_cfg = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra
        choices = hydra_cfg.runtime.choices
        overrides = command_overrides([o for o in hydra_cfg.overrides.task if not o.startswith(SWEEP_CHOICES)])
        row: dict[str, Any] = {
            "job": _select(hydra_cfg, "job.num"),
            "status": "ok",
            "strategy": choices.get("strategy"),
            "model": _model_name(cfg, choices.get("model")),
            "data": choices.get("data"),
            "split": _split_label(cfg),
            "max_length": _select(cfg, "data.max_length"),
            "precision": None,
            "lr": _select(cfg, "optimizer.lr"),
            "batch_size": _select(cfg, "data.batch_size"),
            "max_epochs": _select(cfg, "trainer.max_epochs"),
            "seed": _select(cfg, "seed"),
            "epochs_run": None,
            **dict.fromkeys(MEASURED),
            "device": None,
            **dict.fromkeys(PROCESS),
            "overrides": " ".join(overrides),  # as typed on the command line
            "error": "",
            "dir": str(job_dir.relative_to(sweep_dir)),
        }
        metrics_file = job_dir / "metrics.json"
        if metrics_file.is_file():
            record = json.loads(metrics_file.read_text())
            hparams = record["hparams"]
            row.update(lr=hparams["lr"], precision=hparams["precision"])
            row.update(epochs_run=record["epochs_run"], device=record["device"])
            row.update({key: record.get("process", {}).get(key) for key in PROCESS})
            for column, (section, key) in MEASURED.items():
                row[column] = record[section].get(key)
        else:
            status, error = _failure(job_dir)
            row.update(status=status, error=error)
        rows.append(row)
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs
    runs[list(MEASURED)] = runs[list(MEASURED)].apply(pd.to_numeric)
    runs["variant"] = _variants(runs["overrides"])
    return runs.sort_values("job", kind="stable", ignore_index=True)


def _parse(overrides: str) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides.split() if "=" in o)


def _variants(overrides: pd.Series) -> list[str]:
    """Per run, the overrides that vary across the sweep and have no column of their own."""
    parsed = [_parse(text) for text in overrides]
    common = set.intersection(*(set(p.items()) for p in parsed)) if parsed else set()
    return [",".join(f"{k}={v}" for k, v in p.items() if k not in OWN_COLUMNS and (k, v) not in common) for p in parsed]


def common_overrides(runs: pd.DataFrame) -> list[str]:
    """Overrides every run of the sweep shares (e.g. `model.attention_dropout=0.0`), for the header."""
    sets = [set(text.split()) for text in runs["overrides"]]
    shared = set.intersection(*sets) if sets else set()
    return sorted(o for o in shared if o.split("=", 1)[0] not in OWN_COLUMNS)


# ---------------------------------------------------------------- aggregating


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count per configuration (setting + config), sorted by mean test accuracy."""
    keys = SETTING + CONFIG
    keyed = runs.assign(_key=runs[keys].astype(str).agg("|".join, axis=1))
    ok = keyed[keyed["status"] == "ok"]
    by_config = ok.groupby("_key")
    stats = by_config[AGGREGATED].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    stats["seeds"] = by_config["seed"].nunique()
    stats["not ok"] = keyed[keyed["status"] != "ok"].groupby("_key").size().reindex(stats.index, fill_value=0)
    stats = by_config[keys].first().join(stats).reset_index(drop=True)
    stats = stats.sort_values("test_acc_mean", ascending=False, ignore_index=True)
    stats["label"] = _labels(stats)
    return stats


def _labels(stats: pd.DataFrame) -> list[str]:
    """Short names for plots: the strategy, plus whatever tells its configurations apart."""
    varying = [c for c in [*SETTING, *CONFIG[1:]] if stats[c].astype(str).nunique() > 1]
    labels = []
    for _, row in stats.iterrows():
        same_strategy = stats[stats["strategy"] == row["strategy"]]
        extra = [f"{c}={row[c]}" for c in varying if same_strategy[c].astype(str).nunique() > 1 and row[c] != ""]
        labels.append(" ".join([row["strategy"], *extra]))
    return labels


def best_per_strategy(stats: pd.DataFrame) -> pd.DataFrame:
    """Per setting and strategy, the configuration with the best mean validation accuracy (not test)."""
    ranked = stats.sort_values("val_acc_mean", ascending=False)
    best = ranked.groupby([*SETTING, "strategy"], dropna=False, sort=False).head(1)
    return best.sort_values("test_acc_mean", ascending=False, ignore_index=True)


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> list[bool]:
    """True for points no other point beats: at most the cost and at least the score, better in one."""

    def valid(c: float, s: float) -> bool:
        return not (math.isnan(c) or math.isnan(s))

    points = [(float(c), float(s)) for c, s in zip(cost, score, strict=True)]
    return [
        valid(c, s) and not any(valid(c2, s2) and c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in points)
        for c, s in points
    ]


# ---------------------------------------------------------------- reading the trade-offs


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.3g}%" if whole else "n/a"


# The training memory is per run; runs older than it only have the process peak.
_MEMORY = {"train_memory_mb": "training memory", "peak_memory_mb": "peak memory"}


def reading(best: pd.DataFrame) -> list[str]:
    """Sentences on the trade-offs, every number taken from the best-per-strategy table."""
    sentences = []
    memory = "train_memory_mb" if best["train_memory_mb_mean"].notna().all() else "peak_memory_mb"
    for _, group in best.groupby(SETTING, dropna=False, sort=False):
        group = group.set_index("strategy")
        reference = "full" if "full" in group.index else group["test_acc_mean"].idxmax()
        ref = group.loc[reference]
        prefix = f"[{ref['model']}, {ref['data']}] " if best[SETTING].drop_duplicates().shape[0] > 1 else ""
        for name, row in group.iterrows():
            if name == reference:
                continue
            diff = row["test_acc_mean"] - ref["test_acc_mean"]
            se = math.hypot(_se(row), _se(ref))
            noise = (
                f"the difference ({diff:+.3f}) is within two standard errors over seeds"
                if not math.isnan(se) and abs(diff) <= 2 * se
                else f"a difference of {diff:+.3f}"
                + (" from one seed each, no spread to judge it by" if math.isnan(se) else f", two SE {2 * se:.3f}")
            )
            sentences.append(
                f"{prefix}{name} reaches {_pct(row['test_acc_mean'], ref['test_acc_mean'])} of {reference}'s test"
                f" accuracy ({row['test_acc_mean']:.3f} vs {ref['test_acc_mean']:.3f}; {noise}) with"
                f" {_pct(row['trainable_params_mean'], ref['trainable_params_mean'])} of its trainable parameters,"
                f" {_pct(row[f'{memory}_mean'], ref[f'{memory}_mean'])} of its {_MEMORY[memory]} and"
                f" {_pct(row['fit_time_s_mean'], ref['fit_time_s_mean'])} of its fit time."
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
    return sentences


def _sharing_caveats(runs: pd.DataFrame) -> list[str]:
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
    """`Job 3` or `Jobs 1, 3`."""
    return ("Job " if len(runs) == 1 else "Jobs ") + ", ".join(str(j) for j in sorted(runs["job"]))


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


# ---------------------------------------------------------------- tables


def _mean_std(row: pd.Series, column: str, fmt: str, spread: bool = True) -> str:
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    if pd.isna(mean):
        return "–"
    return fmt.format(mean) + ("" if pd.isna(std) or not spread else " ± " + fmt.format(std))


def display_table(stats: pd.DataFrame) -> pd.DataFrame:
    """The summary as formatted strings (mean ± std), dropping columns that are the same everywhere."""
    table = stats[[*SETTING, *CONFIG, "seeds"]].copy()
    for label, column, fmt in DISPLAYED:
        spread = column not in SAME_FOR_EVERY_SEED
        table[label] = [_mean_std(row, column, fmt, spread) for _, row in stats.iterrows()]
    table["not ok"] = stats["not ok"]
    constant = [c for c in [*SETTING, "max_epochs", "variant"] if table[c].astype(str).nunique() <= 1]
    if not (table["not ok"] > 0).any():
        constant.append("not ok")
    return table.drop(columns=constant).rename(columns=HEADERS)


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    """Everything a sweep report shows; `write` puts it in the sweep folder."""

    sweep_dir: Path
    runs: pd.DataFrame
    stats: pd.DataFrame = field(init=False)
    best: pd.DataFrame = field(init=False)
    sentences: list[str] = field(init=False)
    search: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = summarise(self.runs)
        self.best = best_per_strategy(self.stats)
        self.sentences = reading(self.best) if not self.best.empty else []
        self.sentences += _sharing_caveats(self.runs)
        self.search = search_result(self.sweep_dir, self.runs)

    def header(self) -> list[str]:
        counts = self.runs["status"].value_counts()
        runs = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "interrupted", "incomplete"))
        lines = [f"Sweep: `{self.sweep_dir}`", f"Runs: {runs}"]
        command = _sweep_command(self.sweep_dir)
        if command:
            lines.append(f"Command: `{command}`")
        shared = common_overrides(self.runs)
        if shared:
            lines.append("Overrides shared by every run: " + ", ".join(f"`{o}`" for o in shared))
        for column in [*SETTING, "max_epochs", "precision", "device"]:
            values = sorted(self.runs[column].dropna().astype(str).unique())
            if len(values) == 1:
                lines.append(f"{column}: {values[0]}")
        settings = self.stats[SETTING].drop_duplicates()
        if len(settings) > 1:
            lines.append(f"{len(settings)} different model/data settings: runs are grouped by them, never mixed.")
        return lines

    def failed_lines(self) -> list[str]:
        not_ok = self.runs[self.runs["status"] != "ok"]
        return [f"`{r.dir}` ({r.strategy}, seed {r.seed}, {r.status}): {r.error}" for r in not_ok.itertuples()]

    def sections(self) -> list[tuple[str, pd.DataFrame | list[str] | str]]:
        """(title, table | bullet list | paragraph) in report order; markdown and HTML render the same sections."""
        parts: list[tuple[str, pd.DataFrame | list[str] | str]] = []
        if not self.stats.empty:
            several = len(self.best) < len(self.stats)
            parts += [
                ("Per configuration (mean ± std over seeds, sorted by test accuracy)", display_table(self.stats)),
                (
                    "Best configuration per strategy (chosen by mean validation accuracy)",
                    display_table(self.best) if several else "Each strategy ran in one configuration: the table above.",
                ),
                ("Reading", self.sentences),
            ]
        if self.search:
            parts.append(("Hyper-parameter search", self.search))
        if self.failed_lines():
            parts.append(("Runs without a result", self.failed_lines()))
        return parts

    def markdown(self, images: Sequence[Path]) -> str:
        parts = ["# Fine-tuning strategy comparison", "", *[f"- {line}" for line in self.header()], ""]
        for title, body in self.sections():
            if isinstance(body, pd.DataFrame):
                text = _markdown(body)
            else:
                text = body if isinstance(body, str) else "\n".join(f"- {item}" for item in body)
            parts += [f"## {title}", "", text, ""]
        parts += [f"![{p.stem}]({p.name})" for p in images]
        return "\n".join(parts) + "\n"

    def html(self, images: Sequence[Path]) -> str:
        def table(df: pd.DataFrame) -> str:
            return df.to_html(index=False, border=0, classes="t", na_rep="–")

        body = [f"<h1>Fine-tuning strategy comparison</h1><ul>{_li(self.header())}</ul>"]
        for title, content in self.sections():
            if isinstance(content, pd.DataFrame):
                rendered = table(content)
            else:
                rendered = f"<p>{html.escape(content)}</p>" if isinstance(content, str) else f"<ul>{_li(content)}</ul>"
            body.append(f"<h2>{html.escape(title)}</h2>{rendered}")
        for image in images:
            data = base64.b64encode(image.read_bytes()).decode()
            body.append(f'<figure><img alt="{image.stem}" src="data:image/png;base64,{data}"></figure>')
        body.append(f"<h2>All runs</h2>{table(self.runs.drop(columns=['variant']))}")
        style = (
            "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
            "table.t{border-collapse:collapse;font-size:13px}.t td,.t th{padding:3px 8px;border-bottom:1px solid #ddd}"
            "img{max-width:100%}"
        )
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><title>ftcompare report</title>'
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )

    def write(self) -> list[Path]:
        """results.csv, summary.md, the PNGs and report.html in the sweep folder; returns the paths."""
        from ftcompare import plots  # matplotlib only when plots are drawn

        out = self.sweep_dir
        write_atomic(out / "results.csv", self.runs.drop(columns=["variant"]).to_csv(index=False))
        images = []
        if not self.stats.empty:
            for column, label, log_x in TRADEOFFS:
                if self.stats[f"{column}_mean"].isna().all():  # e.g. training memory in runs older than it
                    continue
                png = plots.tradeoff(self.stats, column, label, log_x)
                images.append(write_atomic(out / f"acc_vs_{column.removesuffix('_s').removesuffix('_mb')}.png", png))
            curves = read_val_curves(self.sweep_dir, self.runs)
            if not curves.empty:
                images.append(write_atomic(out / "val_acc_per_epoch.png", plots.val_curves(curves, self.stats)))
        write_atomic(out / "summary.md", self.markdown(images))
        write_atomic(out / "report.html", self.html(images))
        return [out / "results.csv", out / "summary.md", *images, out / "report.html"]

    def terminal(self) -> str:
        lines = [*self.header()]
        if not self.stats.empty:
            lines += ["", _markdown(display_table(self.stats)), ""]
            lines += self.sentences
        lines += [*self.search, *self.failed_lines()]
        return "\n".join(lines)


def _li(items: Sequence[str]) -> str:
    return "".join(f"<li>{html.escape(i)}</li>" for i in items)


def _sweep_command(sweep_dir: Path) -> str | None:
    """`python train.py -m ...` as the sweep was launched, from Hydra's multirun.yaml."""
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.is_file():
        return None
    task = OmegaConf.load(multirun).hydra.overrides.task
    return " ".join(["python train.py -m", *task])


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
    best = [run for run in runs.itertuples() if wanted.items() <= _parse(run.overrides).items()]
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


def read_val_curves(sweep_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy per epoch of every ok run, from its TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # one INFO line per event file otherwise
    frames = []
    for _, run in runs[runs["status"] == "ok"].iterrows():
        for events_dir in {p.parent for p in (sweep_dir / run["dir"]).rglob("events.out.tfevents.*")}:
            accumulator = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
            accumulator.Reload()
            tags = accumulator.Tags()["scalars"]
            if "val/acc" not in tags or "epoch" not in tags:
                continue
            epoch_at = {event.step: int(event.value) for event in accumulator.Scalars("epoch")}
            per_epoch: dict[int, float] = {}
            for event in accumulator.Scalars("val/acc"):
                per_epoch.setdefault(epoch_at.get(event.step, -1), event.value)
            # re-evaluating the best checkpoint after fit logs with the epoch counter at `epochs_run`
            frames += [
                {**{k: run[k] for k in SETTING + CONFIG}, "seed": run["seed"], "epoch": e + 1, "val_acc": v}
                for e, v in per_epoch.items()
                if 0 <= e < run["epochs_run"]
            ]
    return pd.DataFrame(frames)


def newest_sweep(root: Path) -> Path:
    """The most recently written sweep folder under `root` (one holding Hydra's multirun.yaml)."""
    sweeps = sorted(root.rglob("multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FileNotFoundError(f"no sweep (multirun.yaml) under {root}/; pass the sweep folder: python report.py DIR")
    return sweeps[-1].parent


def build_report(sweep_dir: str | Path) -> Report:
    """Collect the runs of a sweep (or single-run) folder and build its report."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir)
    if runs.empty:
        raise FileNotFoundError(f"no Hydra runs (.hydra/config.yaml) under {sweep_dir}: is this a sweep folder?")
    return Report(sweep_dir, runs)


class ReportOnMultirunEnd(Callback):
    """Hydra callback: writes the report into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report(sweep_dir)
            paths = report.write()
        except Exception:  # a report bug must not hide the finished runs
            log.exception("could not write the report; re-run it with: python report.py %s", sweep_dir)
            return
        log.info("\n%s\nreport: %s", report.terminal(), ", ".join(str(p) for p in paths))
