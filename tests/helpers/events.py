"""Where a run's TensorBoard events are: `<run>/tensorboard/<strategy>_<run id>/`."""

from __future__ import annotations

import json
from pathlib import Path


def events_dir(run_dir: Path) -> str:
    """The run's one TensorBoard run folder, named by its strategy and run id."""
    (folder,) = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    record = next((run_dir / name for name in ("metrics.json", "error.json") if (run_dir / name).is_file()), None)
    if record is not None:
        assert folder.name.endswith("_" + json.loads(record.read_text())["run_id"]), folder
    return str(folder)
