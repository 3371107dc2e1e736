"""eval.py, predict.py, export.py and report.py as a user calls them: `ckpt_path=` takes a checkpoint, a run
folder, a sweep folder or `best`; bad input is one `error:` line naming the setting and the fix, exit code 2,
no traceback, and no output folder left behind."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, run_script, tiny_overrides, write_csv
from hydra import compose, initialize_config_dir

from ftcompare.errors import ConfigError
from ftcompare.evaluation import evaluate
from ftcompare.export import export
from ftcompare.prediction import predict
from ftcompare.runs import find_checkpoint


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_models, reviews_csv) -> Path:
    """A folder holding one finished tiny LoRA run under outputs/ (where `ckpt_path=best` looks)."""
    cwd = tmp_path_factory.mktemp("tools")
    result = run_script("train.py", "strategy=lora", *tiny_overrides(tiny_models["bert"], reviews_csv), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd


def run_folder(workdir: Path) -> Path:
    (folder,) = (p.parent for p in (workdir / "outputs").glob("*/*/metrics.json"))
    return folder


@pytest.mark.parametrize("form", ["file", "run folder", "best"])
def test_ckpt_path_takes_a_file_a_run_folder_or_best(workdir, form):
    run = run_folder(workdir)
    record = json.loads((run / "metrics.json").read_text())
    value = {"file": record["checkpoint"], "run folder": str(run), "best": "best"}[form]
    result = run_script("eval.py", f"ckpt_path={value}", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (written,) = (workdir / "outputs" / "eval").glob("*/*/eval.json")
    evaluation = json.loads(written.read_text())
    written.parent.joinpath("eval.json").unlink()  # the next form writes its own
    assert Path(evaluation["checkpoint"]).resolve() == Path(record["checkpoint"]).resolve()
    assert evaluation["metrics"]["test/acc"] == pytest.approx(record["test"]["test/acc"])


@pytest.mark.parametrize("newest", ["sweep", "run"])
def test_ckpt_path_best_is_the_best_of_the_newest_run_or_sweep_and_says_so(
    tmp_path, workdir, monkeypatch, caplog, newest
):
    """Copies of the finished run placed as an older/newer single run and a two-job sweep."""
    source = run_folder(workdir)

    def place(folder: Path, val_acc: float) -> None:
        shutil.copytree(source, folder)
        record = json.loads((folder / "metrics.json").read_text())
        record["val"]["val/acc"] = val_acc
        (folder / "metrics.json").write_text(json.dumps(record))

    older, newer = "2026-01-01/10-00-00", "2026-01-02/09-00-00"
    run_at, sweep_at = (older, newer) if newest == "sweep" else (newer, older)
    place(tmp_path / "outputs" / run_at, 0.9)  # a higher val/acc than the sweep's: age decides, not accuracy
    place(tmp_path / "multirun" / sweep_at / "0_lora", 0.7)
    place(tmp_path / "multirun" / sweep_at / "1_lora", 0.8)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="ftcompare.runs"):
        found = find_checkpoint("best")
    chosen = Path("multirun", sweep_at, "1_lora") if newest == "sweep" else Path("outputs", run_at)
    assert found.parent.parent == chosen.absolute()
    folder = Path("multirun", sweep_at) if newest == "sweep" else chosen
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ckpt_path=best")]
    assert f"(val/acc {0.8 if newest == 'sweep' else 0.9:.4f}), from {folder}, the newest {newest}" in line
    assert line.endswith(f"(started {newer.replace('/', ' ')})")


def _bad_inputs(root: Path, run: Path) -> dict[str, tuple[list[str], str]]:
    """(command line, words the one error line must contain), per case."""
    garbage = run / "checkpoints" / "not_a_checkpoint.ckpt"
    garbage.write_text("this is not a checkpoint")
    empty_dir = root / "empty"
    empty_dir.mkdir(exist_ok=True)
    (root / "blank.txt").write_text("\n   \n")
    holes = write_csv(root / "holes.csv", [["a fine film"], [""]], header=["text"])
    return {
        "predict without arguments": (["predict.py"], "ckpt_path not given"),
        "predict an empty text": (["predict.py", f"ckpt_path={run}", "text=' '"], "is empty"),
        "predict a blank file": (["predict.py", f"ckpt_path={run}", f"input={root / 'blank.txt'}"], "no text"),
        "predict a CSV with an empty row": (["predict.py", f"ckpt_path={run}", f"input={holes}"], "empty text(s)"),
        "predict a missing input": (["predict.py", f"ckpt_path={run}", "input=/no/such.txt"], "input='/no/such.txt'"),
        "predict text and input": (["predict.py", f"ckpt_path={run}", "text=x", f"input={holes}"], "exactly one"),
        "predict a wrong column": (
            ["predict.py", f"ckpt_path={run}", f"input={holes}", "text_column=review"],
            "text_column=",
        ),
        "a file that is not a checkpoint": (["eval.py", f"ckpt_path={garbage}"], "is not a checkpoint this package"),
        "a checkpoint outside a run": (["eval.py", "ckpt_path=/etc/hostname"], "not a checkpoint inside a run"),
        "a folder with no run": (["eval.py", f"ckpt_path={empty_dir}"], "no finished run"),
        "best with no runs here": (["eval.py", "ckpt_path=best"], "ckpt_path=best: no finished"),
        "eval of an unknown split": (["eval.py", f"ckpt_path={run}", "split=train"], "split='train'"),
        "export into a full folder": (["export.py", f"ckpt_path={run}", f"output_dir={run}"], "is not empty"),
        "export onto a file": (["export.py", f"ckpt_path={run}", f"output_dir={root / 'blank.txt'}"], "is a file"),
        "report of no sweep": (["report.py", str(empty_dir)], "no Hydra runs"),
        "baselines of a missing file": (
            ["baselines.py", "data=files", "data.source.data_files=/no/such.csv"],
            "data.source.data_files='/no/such.csv' does not exist",
        ),
        "estimate of batches of 0": (["estimate.py", "data.batch_size=0"], "data.batch_size=0 is invalid"),
    }


# Through the command line (the one-line exit, nothing left behind); the rest call the tool's task in-process.
COMMAND_LINE = [
    "predict without arguments",
    "a file that is not a checkpoint",
    "best with no runs here",
    "report of no sweep",
    "baselines of a missing file",
    "estimate of batches of 0",
]
IN_PROCESS = [
    "predict an empty text",
    "predict a blank file",
    "predict a CSV with an empty row",
    "predict a missing input",
    "predict text and input",
    "predict a wrong column",
    "a checkpoint outside a run",
    "a folder with no run",
    "eval of an unknown split",
    "export into a full folder",
    "export onto a file",
]
TASKS = {"predict.py": predict, "eval.py": evaluate, "export.py": export}


@pytest.mark.parametrize("case", COMMAND_LINE)
def test_bad_input_to_the_tools_is_one_line_and_leaves_nothing(workdir, tmp_path, case):
    command, words = _bad_inputs(tmp_path, run_folder(workdir))[case]
    result = run_script(*command, cwd=tmp_path)  # a folder of its own: whatever the tool writes lands here
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert words in errors[0] and "Fix:" in errors[0], errors[0]
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("case", IN_PROCESS)
def test_bad_input_to_the_tools_names_the_setting_and_the_fix(workdir, tmp_path, case):
    (script, *overrides), words = _bad_inputs(tmp_path, run_folder(workdir))[case]
    where = [] if script == "export.py" else [f"paths.output_dir={tmp_path / 'out'}"]  # export: its output_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(script.removesuffix(".py"), overrides=[*overrides, *where])
    with pytest.raises(ConfigError) as refused:
        TASKS[script](cfg)
    assert words in str(refused.value) and "Fix:" in str(refused.value), refused.value
    assert not (tmp_path / "out").exists()
