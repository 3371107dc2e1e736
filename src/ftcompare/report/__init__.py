"""The comparison report of a sweep: rows from each job's files (`records`), aggregates over seeds (`tables`),
paired tests on the shared test examples (`paired`), a generated reading (`reading`), plots and one HTML page
(`page`: `build_report(folder).write()`); a Hydra callback (`callback`) writes it after every multirun.

The package re-exports nothing: its modules import each other, never the package."""
