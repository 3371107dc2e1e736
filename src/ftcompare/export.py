"""Export a checkpoint as a Hugging Face folder (`python export.py ckpt_path=...`) that loads without this
package: `AutoModelForSequenceClassification.from_pretrained(folder)`, or for a PEFT adapter kept apart
(merge=false) `peft.AutoPeftModelForSequenceClassification.from_pretrained(folder)`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from peft import PeftModel

from ftcompare.errors import ConfigError
from ftcompare.io import write_json
from ftcompare.models import portable_name
from ftcompare.runs import find_checkpoint, load_tokenizer, load_trained, run_config

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model (merged, or base name + adapter), its tokenizer and export.json into `cfg.output_dir`."""
    ckpt_path, out = find_checkpoint(cfg.ckpt_path), Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={str(out)!r} is a file. Fix: the path of a new or empty folder")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output_dir={str(out)!r} is not empty. Fix: another output_dir")
    run = run_config(ckpt_path)
    module = load_trained(ckpt_path, run)
    model = module.model
    if not hasattr(model, "save_pretrained"):
        raise ConfigError(
            f"strategy {module.name!r} trains its own head over the pooled backbone, which plain transformers cannot "
            "load. Fix: use predict.py/eval.py with this checkpoint, or export a run of another strategy"
        )
    as_adapter = isinstance(model, PeftModel) and not cfg.merge
    if isinstance(model, PeftModel) and cfg.merge:
        model = model.merge_and_unload()  # plain transformers weights, the adapter folded in
    model.save_pretrained(out)
    if as_adapter:  # peft writes this machine's path of the base model; the adapter should name it portably
        adapter_config = out / "adapter_config.json"
        settings = json.loads(adapter_config.read_text())
        settings["base_model_name_or_path"] = portable_name(run.model.name_or_path)
        write_json(adapter_config, settings)
    load_tokenizer(run).save_pretrained(out)
    record = {
        "checkpoint": str(ckpt_path),
        "strategy": module.name,
        "base_model": portable_name(run.model.name_or_path),
        "base_model_path": run.model.name_or_path,  # where it was on the machine that trained
        "format": "peft adapter" if as_adapter else "transformers",
        "load_with": (
            "peft.AutoPeftModelForSequenceClassification.from_pretrained"
            if as_adapter
            else "transformers.AutoModelForSequenceClassification.from_pretrained"
        ),
        "max_length": run.data.max_length,
        "truncation": run.data.get("truncation", "head"),  # which tokens of a longer text (data/truncation.py)
        "label_names": list(module.label_names),
    }
    write_json(out / "export.json", record)
    log.info(
        "exported %s (%s) to %s; load it with %s(%r)", module.name, record["format"], out, record["load_with"], str(out)
    )
    return record
