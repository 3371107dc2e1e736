"""Bad input: one clear line naming the setting and the fix, a non-zero exit, and no result that looks
finished. In-process through `ftcompare.job.run` (what `train.py` calls); the command-line
path (exit codes, no traceback, Hydra's own refusals) is covered in test_train.py."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from helpers import tiny_overrides
from transformers import AutoModel, GPT2Config, T5Config

from ftcompare.errors import ConfigError
from ftcompare.job import run
from ftcompare.resolvers import embedded_model_path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_models, reviews_csv) -> dict[str, str]:
    """Broken data files and model folders, next to a good review CSV."""
    root = tmp_path_factory.mktemp("bad")
    with open(reviews_csv, newline="") as f:
        rows = list(csv.reader(f))
    files = {
        "empty": b"",
        "header_only": b"text,label\n",
        "latin1": "text,label\n" + "\n".join(f'"caf\xe9 {i}",{i % 2}' for i in range(300)),
        "ragged": "text,label\na,1\nb,0,extra,more\n",
        "no_label": "review,stars\n" + "\n".join(f"r{i},{i}" for i in range(300)),
        "neutral": _csv([*rows, ["a neutral review", "2"]]),
        "one_class": _csv([row for row in rows if row[1] != "0"]),
        "one_two": _csv([rows[0], *([text, str(int(label) + 1)] for text, label in rows[1:])]),  # not 0..k-1
        "fractional": _csv(
            [rows[0], *([text, "0.5" if i % 3 == 0 else label] for i, (text, label) in enumerate(rows[1:]))]
        ),
    }
    paths = {}
    for name, content in files.items():
        path = root / f"{name}.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("latin-1" if name == "latin1" else "utf-8"))
        paths[name] = str(path)
    tiny = {"n_layer": 2, "n_head": 2, "n_embd": 32}
    for name, config in {"gpt2": GPT2Config(**tiny), "t5": T5Config(d_model=32, num_layers=1, num_heads=2)}.items():
        AutoModel.from_config(config).save_pretrained(root / name)
        paths[name] = str(root / name)
    custom = root / "custom_code"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps({"model_type": "my-encoder", "auto_map": {"AutoConfig": "my_encoder.MyConfig"}})
    )
    (custom / "my_encoder.py").write_text("raise SystemExit('custom code ran')\n")
    paths["custom_code"] = str(custom)
    paths["folder"] = str(root)
    return paths


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


# (overrides, words the one error line must contain). `{name}` is a file from `bad_files`.
CASES = {
    "lr zero": (["optimizer.lr=0"], "optimizer.lr=0"),
    "lr negative": (["optimizer.lr=-1e-4"], "optimizer.lr=-0.0001"),
    "lr not a number": (["optimizer.lr=abc"], "optimizer.lr='abc'"),
    "lr infinite": (["optimizer.lr=inf"], "optimizer.lr=inf"),
    "lr multiplier": (["lr_multiplier=0"], "lr_multiplier=0"),
    "batch size 0": (["data.batch_size=0"], "data.batch_size=0"),
    "eval batch size": (["data.eval_batch_size=0"], "data.eval_batch_size=0"),
    "epochs 0": (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    "max_length short": (["data.max_length=4"], "data.max_length=4"),
    "max_length above the model": (["data.max_length=4096"], "data.max_length=4096 is above the 512 positions"),
    "unknown precision": (["trainer.precision=bf17"], "trainer.precision='bf17'"),
    "misspelt strategy key": (["strategy=lora", "+strategy.rank=4"], "strategy.rank is not a setting"),
    "misspelt data key": (["+data.batchsize=4"], "did you mean data.batch_size?"),
    "misspelt trainer key": (["+trainer.max_epoch=4"], "did you mean trainer.max_epochs?"),
    "unknown class": (["strategy._target_=ftcompare.strategies.Nope"], "strategy._target_"),
    "unregistered strategy name": (["strategy.name=nope"], "strategy.name='nope' is not a registered strategy"),
    "class of another strategy": (
        ["strategy=full", "strategy._target_=ftcompare.strategies.bitfit.BitFit"],
        "is not the class registered for strategy 'full'",
    ),
    "strategy yaml without default_lr": (["~default_lr"], "default_lr"),
    "lora rank 0": (["strategy=lora", "strategy.r=0"], "strategy.r=0"),
    "lora dropout 1": (["strategy=lora", "strategy.dropout=1.0"], "strategy.dropout=1.0"),
    "unfreeze in 0 groups": (["strategy=gradual", "strategy.groups=0"], "strategy.groups=0"),
    "layer lr decay 0": (["strategy=gradual", "strategy.layer_lr_decay=0"], "strategy.layer_lr_decay=0"),
    "layer lr decay above 1": (["strategy=gradual", "strategy.layer_lr_decay=2.6"], "strategy.layer_lr_decay=2.6"),
    "all layers before the first": (
        ["strategy=gradual", "strategy.head_only=0.5", "strategy.all_from=0.2"],
        "strategy.all_from=0.2 is before strategy.head_only=0.5",
    ),
    "head alone past the end": (["strategy=gradual", "strategy.head_only=1.5"], "strategy.head_only=1.5"),
    "frozen layer the model lacks": (["strategy=frozen", "strategy.layers=[-1,-9]"], "strategy.layers=[-1, -9]"),
    "frozen layer count 0": (["strategy=frozen", "strategy.layers=0"], "strategy.layers=0"),
    "frozen combine unknown": (["strategy=frozen", "strategy.combine=sum"], "strategy.combine='sum'"),
    "unknown truncation": (["data.truncation=middle"], "data.truncation='middle'"),
    "splits too big": (["data.train_size=100000"], "data.train_size + data.val_size + data.test_size = 100064"),
    "split of one row": (["data.val_size=1"], "data.val_size=1 cannot be drawn stratified"),
    "train subset above the train split": (["data.train_subset=65"], "data.train_subset=65 is larger than the train"),
    "train subset 0": (["data.train_subset=0"], "data.train_subset=0 is invalid"),
    "one class only": (["data.source.data_files={one_class}"], "one class only"),
    "missing model": (["model.name_or_path=/no/such/model"], "model.name_or_path='/no/such/model' does not exist"),
    "not an encoder": (["model.name_or_path={gpt2}"], "'gpt2'"),
    "encoder-decoder": (["model.name_or_path={t5}"], "is not an encoder the strategies understand"),
    "remote code": (["model.name_or_path={custom_code}"], "model.trust_remote_code=true"),
    "missing data file": (["data.source.data_files=/no/such.csv"], "data.source.data_files='/no/such.csv'"),
    "empty file": (["data.source.data_files={empty}"], "is empty"),
    "header only": (["data.source.data_files={header_only}"], "could not be read"),
    "not utf-8": (["data.source.data_files={latin1}"], "is not UTF-8 text"),
    "malformed csv": (["data.source.data_files={ragged}"], "Expected 2 fields in line 3"),
    "missing columns": (["data.source.data_files={no_label}"], "no column(s) ['text', 'label']"),
    "label outside the set": (["data.source.data_files={neutral}"], "outside the label set"),
    "missing checkpoint": (["ckpt_path=/no/such.ckpt"], "ckpt_path='/no/such.ckpt'"),
    "seed not a number": (["seed=abc"], "seed='abc'"),
    "batch size not a number": (["data.batch_size=abc"], "data.batch_size='abc'"),
    "epochs not a number": (["trainer.max_epochs=two"], "trainer.max_epochs='two'"),
    "weight decay negative": (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1"),
    "adam eps zero": (["+optimizer.eps=0"], "optimizer.eps=0"),
    "adam betas of 1 or more": (["+optimizer.betas=[1.5,0.9]"], "optimizer.betas=[1.5, 0.9]"),
    "warmup over the whole run": (["scheduler.warmup_ratio=1.5"], "scheduler.warmup_ratio=1.5"),
    "negative clipping": (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    "accumulate no batches": (["+trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    "limit above the whole split": (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5"),
    "no devices": (["trainer.devices=0"], "trainer.devices=0"),
    "a trainer strategy Lightning lacks": (["+trainer.strategy=nonsense"], "invalid strategy name"),
    "labels to infer that are neither names nor indices": (
        ["data.label_names=null", "data.source.data_files={one_two}"],
        "neither all strings nor the integers 0..k-1",
    ),
    "one class only, labels to infer": (
        ["data.label_names=null", "data.source.data_files={one_class}"],
        "holds one class only (1): there is nothing to tell apart",
    ),
    "fractional labels": (["data.source.data_files={fractional}"], "holds fractional labels (0.5)"),
    "text and label the same column": (["data.text_column=label"], "data.text_column and data.label_column are both"),
    "a folder as the data file": (["data.source.data_files={folder}"], "is a folder. Fix: name a file in it"),
    "a glob matching no file": (["data.source.data_files=/no/such/*.csv"], "'/no/such/*.csv' matches no file"),
    "lora target modules matching nothing": (
        ["strategy=lora", "strategy.target_modules=[nope]"],
        "strategy.target_modules=['nope'] matches no module of this bert model",
    ),
    "validation every 0 batches": (["+trainer.val_check_interval=0"], "trainer.val_check_interval=0 is invalid"),
    "validation every more batches than an epoch": (
        ["+trainer.val_check_interval=100"],
        "trainer.val_check_interval=100 is more than the 3 training batches",
    ),
}
if not torch.cuda.is_available():
    CASES["a GPU on a machine without one"] = (["trainer.accelerator=gpu"], "this machine has no GPU")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_naming_setting_and_fix(
    case, compose_cfg, tiny_models, reviews_csv, bad_files, tmp_path, capsys
):
    overrides, words = CASES[case]
    overrides = [o.format(**bad_files) for o in overrides]
    cfg = compose_cfg(*tiny_overrides(tiny_models["bert"], reviews_csv), *overrides)
    with pytest.raises(SystemExit) as exit_:
        run(cfg)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2, errors
    assert len(errors) == 1 and words in errors[0] and "Fix:" in errors[0], errors
    assert not (tmp_path / "metrics.json").exists()
    recorded = json.loads((tmp_path / "error.json").read_text())
    assert recorded["status"] == "failed" and recorded["error"] == errors[0].removeprefix("error: ")


def test_the_remote_code_was_never_run(compose_cfg, bad_files, tiny_models, reviews_csv):
    cfg = compose_cfg(
        *tiny_overrides(tiny_models["bert"], reviews_csv), f"model.name_or_path={bad_files['custom_code']}"
    )
    with pytest.raises(SystemExit) as exit_:
        run(cfg)
    assert exit_.value.code == 2  # the module would have exited with its own message


def test_empty_and_whitespace_texts_are_dropped_and_counted(compose_cfg, tiny_models, reviews_csv, tmp_path):
    from hydra.utils import instantiate

    with open(reviews_csv, newline="") as f:
        rows = list(csv.reader(f))
    data = tmp_path / "with_blanks.csv"
    data.write_text(_csv([*rows, ["   ", "1"], ["", "0"], ["\t\n", "1"]]))
    cfg = compose_cfg(*tiny_overrides(tiny_models["bert"], str(data)))
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    assert datamodule.dropped == {"train": 3}
    assert all(text.strip() for split in datamodule.raw_splits().values() for text in split["text"])


def test_embedded_model_passes_the_backbone_check():
    from ftcompare.models import check_backbone

    check_backbone({"name_or_path": embedded_model_path()}, 512)
    with pytest.raises(Exception, match=r"data\.max_length=513"):
        check_backbone({"name_or_path": embedded_model_path()}, 513)


def test_logger_mlflow_without_mlflow_installed_is_refused_before_the_run(compose_cfg, monkeypatch):
    import importlib.util

    from ftcompare.validation import validate

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"logger.mlflow needs MLflow, which is not installed. Fix: pip install"):
        validate(compose_cfg("logger=many"))
    validate(compose_cfg("logger=csv"))  # the others need nothing more
