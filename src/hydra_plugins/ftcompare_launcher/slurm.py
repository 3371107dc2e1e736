"""Sweeps on SLURM: hydra-submitit-launcher's launcher, waiting for every job of the array.

Upstream collects the jobs' results in order and stops at the first job that SLURM ended without one (`scancel`,
a node lost, a time limit without requeue): the sweep exits with submitit's traceback while later jobs still run,
and no report is written. Here such a job counts as a failed job of the sweep (NaN, as `job.run` returns for
one), its folder keeps what the run recorded (`error.json` after the SIGTERM path), and the sweep goes on to its
report. A job that SLURM requeues (preemption, `scontrol requeue`, submitit's time-limit requeue) has no result
yet and stays pending, so the launcher waits for its next start, which resumes the run (`resume.requeued`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the jobs as one array (as upstream does), then wait for all of them."""
        import submitit
        from submitit.core.utils import UncompletedJobError

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=self.params["submitit_folder"],
            slurm_max_num_timeout=self.params["max_num_timeout"],
        )
        queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in queue_keys else f"slurm_{k}": v for k, v in self.params.items() if k not in init_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        args = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*args, strict=True))
        returns = []
        for job, (overrides, *_rest) in zip(jobs, args, strict=True):
            try:
                returns.append(job.results()[0])
            except UncompletedJobError:
                log.warning("SLURM job %s ended without a result (state %s): counted as failed", job.job_id, job.state)
                returns.append(JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=float("nan")))
        return returns
