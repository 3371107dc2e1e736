"""The sweep report as written: results.csv, summary.md, the plots and one self-contained report.html."""

from __future__ import annotations

import base64
import html
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from ftcompare.errors import ConfigError
from ftcompare.io import write_atomic
from ftcompare.report.axes import CONDITIONS, axis_table, best_values, swept_values
from ftcompare.report.baseline import baseline_table, sweep_baseline, whole_text_test
from ftcompare.report.paired import display_paired, paired_table
from ftcompare.report.reading import reading, search_result, sharing_caveats
from ftcompare.report.records import CONFIG, SETTING, collect_runs, common_overrides, read_val_curves, sweep_of
from ftcompare.report.tables import (
    HEADERS,
    best_per_strategy,
    compact_table,
    display_table,
    markdown_table,
    summarise,
)

# The "All runs" table of report.html: column, header with its unit
RUN_FIGURES = [
    ("epochs_run", "epochs"),
    ("val_acc", "best val acc"),
    ("test_acc", "test acc"),
    ("test_f1", "test F1"),
    ("fit_time_s", "fit (s)"),
    ("tensor_memory_mib", "tensors (MiB)"),
    ("trainable_pct", "trainable %"),
]

HEADER_NAMES = {"memory_method": "tensor memory measured by"}

# Trade-off plots: x column, axis label, log scale.
TRADEOFFS = [
    ("fit_time_s", "fit time (s)", False),
    ("tensor_memory_mib", "training memory (MiB): tensors at the peak of one step (bar: first stage to peak)", False),
    ("train_memory_mb", "training memory (MiB): peak above the level at fit start", False),  # runs before it
    ("trainable_params", "trainable parameters", True),
]


@dataclass
class Report:
    """Everything a sweep report shows; `write` puts it in the sweep folder."""

    sweep_dir: Path
    runs: pd.DataFrame
    sources: list[Path] = field(default_factory=list)  # the sweep folders merged, when more than one
    stats: pd.DataFrame = field(init=False)
    best: pd.DataFrame = field(init=False)
    sentences: list[str] = field(init=False)
    search: list[str] = field(init=False)
    baseline: dict[str, Any] | None = field(init=False)
    paired: pd.DataFrame = field(init=False)
    paired_notes: list[str] = field(init=False)
    swept: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.stats = summarise(self.runs)
        self.best = best_per_strategy(self.stats)
        self.baseline = sweep_baseline(self.sweep_dir, self.runs[self.runs["status"] == "ok"])
        self.paired, self.paired_notes = paired_table(self.sweep_dir, self.runs, self.best)
        self.swept = swept_values(self.runs)
        baseline = whole_text_test(self.baseline)
        self.sentences = reading(self.best, baseline, self.paired) if not self.best.empty else []
        self.sentences += sharing_caveats(self.runs)
        self.search = search_result(self.sweep_dir, self.runs)

    def header(self) -> list[str]:
        counts = self.runs["status"].value_counts()
        runs = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "running", "failed", "interrupted", "incomplete"))
        if len(self.sources) > 1:
            sweeps = self.runs["sweep"].map(lambda source: str(sweep_of(Path(source))))
            n = sweeps.nunique()
            lines = [f"Merged from {n} sweep{'s' * (n > 1)}, written to `{self.sweep_dir}`", f"Runs: {runs}"]
            for sweep, group in self.runs.groupby(sweeps, sort=False):
                picked = set(group["sweep"]) != {sweep}  # job folders named one by one
                jobs = f" (jobs {', '.join(map(str, sorted(group['job'])))} of it)" if picked else ""
                command = _sweep_command(Path(sweep))
                lines.append(f"`{sweep}`: {len(group)} runs{jobs}" + (f", `{command}`" if command else ""))
            repeated = self.runs[self.runs.duplicated([*SETTING, *CONFIG, "seed"], keep=False)]
            if not repeated.empty:
                lines.append(f"{len(repeated)} runs share their settings and seed with a run of another sweep:"
                             " each counts as a run of its own")  # fmt: skip
        else:
            lines = [f"Sweep: `{self.sweep_dir}`", f"Runs: {runs}"]
            command = _sweep_command(self.sweep_dir)
            if command:
                lines.append(f"Command: `{command}`")
        shared = common_overrides(self.runs)
        if shared:
            lines.append("Overrides shared by every run: " + ", ".join(f"`{o}`" for o in shared))
        for column in [*SETTING, "max_epochs", "precision", "device", "memory_method"]:
            values = sorted(self.runs[column].dropna().astype(str).unique())
            if len(values) == 1:
                lines.append(f"{HEADER_NAMES.get(column, column)}: {values[0]}")
        settings = self.stats[SETTING].drop_duplicates()
        if len(settings) > 1:
            differ = [c for c in SETTING if settings[c].nunique() > 1]
            values = "; ".join(
                f"{c}: " + ", ".join(f"`{v}`" for v in _numeric_order(settings[c].unique())) for c in differ
            )
            lines.append(f"{len(settings)} model/data settings ({values}): runs are compared and paired within one.")
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
            if not self.paired.empty or self.paired_notes:
                title = "Paired comparison on the shared test examples (best configurations; bootstrap, McNemar)"
                parts.append((title, display_paired(self.paired) if not self.paired.empty else self.paired_notes))
                if not self.paired.empty and self.paired_notes:
                    parts.append(("Not paired", self.paired_notes))
        picks = best_values(self.runs, self.swept) if not self.swept.empty else pd.DataFrame()
        if not picks.empty:
            conditions = [c for c in self.swept.columns if c in CONDITIONS]
            title = f"Swept settings ({', '.join(self.swept.columns)}): the values validation picks per strategy"
            parts.append((title + "".join(f" at each {c}" for c in conditions), picks))
        if self.baseline:
            parts.append(("Baseline on the same split (`baselines.py`)", baseline_table(self.baseline)))
        if self.search:
            parts.append(("Hyper-parameter search", self.search))
        if self.failed_lines():
            parts.append(("Runs without a result", self.failed_lines()))
        return parts

    def markdown(self, images: Sequence[Path]) -> str:
        parts = ["# Fine-tuning strategy comparison", "", *[f"- {line}" for line in self.header()], ""]
        for title, body in self.sections():
            if isinstance(body, pd.DataFrame):
                text = markdown_table(body)
            else:
                text = body if isinstance(body, str) else "\n".join(f"- {item}" for item in body)
            parts += [f"## {title}", "", text, ""]
        parts += [f"![{p.stem}]({p.name})" for p in images]
        return "\n".join(parts) + "\n"

    def html(self, images: Sequence[Path]) -> str:
        def table(df: pd.DataFrame) -> str:
            return df.to_html(index=False, border=0, classes="t", na_rep="–", float_format=_number)

        body = [f"<h1>Fine-tuning strategy comparison</h1><ul>{_li(self.header())}</ul>"]
        for title, content in self.sections():
            if isinstance(content, pd.DataFrame):
                rendered = table(content)
            else:
                rendered = f"<p>{_inline(content)}</p>" if isinstance(content, str) else f"<ul>{_li(content)}</ul>"
            body.append(f"<h2>{_inline(title)}</h2>{rendered}")
        for image in images:
            data = base64.b64encode(image.read_bytes()).decode()
            body.append(f'<figure><img alt="{image.stem}" src="data:image/png;base64,{data}"></figure>')
        body.append(
            f"<h2>All runs</h2><p>The columns a comparison reads; every column is in "
            f"<code>results.csv</code>.</p>{table(self.runs_table())}"
        )
        style = (
            "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
            "table.t{border-collapse:collapse;font-size:13px}.t td,.t th{padding:3px 8px;border-bottom:1px solid #ddd}"
            "img{max-width:100%}"
        )
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><title>ftcompare report</title>'
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )

    def runs_table(self) -> pd.DataFrame:
        """The runs for a page of about 1,280 px: chosen columns with units, a setting only where runs differ."""
        runs = self.runs
        varying = [c for c in [*SETTING, "lr", "batch_size", "max_epochs"] if runs[c].astype(str).nunique() > 1]
        columns = ["job", "status", "strategy", *varying, "seed", *(c for c, _ in RUN_FIGURES)]
        table = runs[[c for c in columns if c in runs.columns]].copy()
        table["started"] = pd.to_datetime(runs["started"], unit="s", utc=True).dt.strftime("%m-%d %H:%M")
        if (runs["status"] != "ok").any():
            table["error"] = runs["error"].fillna("").str.slice(0, 80)
        return table.rename(columns={**HEADERS, **dict(RUN_FIGURES), "started": "started (UTC)"})

    def write(self) -> list[Path]:
        """results.csv, summary.md, the PNGs and report.html in the sweep folder; returns the paths."""
        from ftcompare.report import plots  # matplotlib only when plots are drawn

        out = self.sweep_dir
        write_atomic(out / "results.csv", self.runs.drop(columns=["variant"]).to_csv(index=False))
        images = []
        if not self.stats.empty:
            for column, label, log_x in TRADEOFFS:
                if self.stats[f"{column}_mean"].isna().all():  # e.g. training memory in runs older than it
                    continue
                if column == "train_memory_mb" and self.stats["tensor_memory_mib_mean"].notna().any():
                    continue  # the tensor-level figure is the comparable one
                png = plots.tradeoff(self.stats, column, label, log_x)
                name = re.sub(r"_(s|mb|mib)$", "", column)  # acc_vs_fit_time.png, acc_vs_tensor_memory.png
                images.append(write_atomic(out / f"acc_vs_{name}.png", png))
            for key in self.swept.columns:  # axis_data.train_size.png, axis_optimizer.lr.png
                png = plots.axis_view(axis_table(self.runs, self.swept, key), key)
                images.append(write_atomic(out / f"axis_{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.png", png))
            curves = read_val_curves(self.sweep_dir, self.runs)
            if not curves.empty:
                images.append(write_atomic(out / "val_acc_per_epoch.png", plots.val_curves(curves, self.stats)))
        write_atomic(out / "summary.md", self.markdown(images))
        write_atomic(out / "report.html", self.html(images))
        return [out / "results.csv", out / "summary.md", *images, out / "report.html"]

    def terminal(self) -> str:
        """The sweep's last screen: the header, a table that fits 100 columns, the reading, where to look next."""
        lines = [*self.header()]
        if not self.stats.empty:
            lines += ["", compact_table(self.stats).to_string(index=False), ""]
            lines += self.sentences
        lines += [*self.search, *self.failed_lines()]
        lines += [
            "",
            f"Report: {self.sweep_dir / 'report.html'} (every column: summary.md and results.csv beside it)",
            f"TensorBoard: tensorboard --logdir {self.sweep_dir}",
        ]
        return "\n".join(lines)


def _number(value: float) -> str:
    """A figure as a reader takes it in: 0.901, 22.5, 1e-04, 1,667."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _li(items: Sequence[str]) -> str:
    return "".join(f"<li>{_inline(i)}</li>" for i in items)


def _inline(text: str) -> str:
    """Markdown's inline code as HTML: the same sentences read alike in summary.md and report.html."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _numeric_order(values: Sequence[Any]) -> list[Any]:
    """`train subset 250` before `train subset 1000`: numbers inside the values compare as numbers."""
    return sorted(values, key=lambda v: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(v))])


def _sweep_command(sweep_dir: Path) -> str | None:
    """`python train.py -m ...` as the sweep was launched, from Hydra's multirun.yaml: the overrides of its runs and
    those of the sweeper's own lists (`hydra.sweeper.params.seed=0`, which narrow an experiment)."""
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.is_file():
        return None
    overrides = OmegaConf.load(multirun).hydra.overrides
    sweeper = [o for o in overrides.hydra if o.startswith("hydra.sweeper.params.")]
    return " ".join(["python train.py -m", *overrides.task, *(shlex.quote(o) for o in sweeper)])


def build_report(*sweep_dirs: str | Path, out: str | Path | None = None) -> Report:
    """Collect the runs of one or more sweep (or single-run) folders and build their report, written into `out`
    (default: the one sweep folder). Several sweeps are merged: chunks of one grid, runs from other days or
    machines; runs are grouped and paired only where their settings and test splits agree."""
    if len(sweep_dirs) > 1 and out is None:
        raise ConfigError("merging several sweeps needs a folder for their report. Fix: --out DIR")
    out_dir = Path(out or sweep_dirs[0])
    frames = []
    for sweep_dir in map(Path, sweep_dirs):
        runs = collect_runs(sweep_dir, relative_to=out_dir)
        if runs.empty:
            raise FileNotFoundError(
                f"no Hydra runs (.hydra/config.yaml) under {sweep_dir}. Fix: pass a sweep folder "
                "(multirun/<date>/<time>)"
            )
        frames.append(runs.assign(sweep=str(sweep_dir)) if len(sweep_dirs) > 1 else runs)
    out_dir.mkdir(parents=True, exist_ok=True)  # the runs' folders are relative to it (`../a/0_lora`)
    return Report(out_dir, pd.concat(frames, ignore_index=True), sources=[Path(d) for d in sweep_dirs])
