"""Lightning callbacks: the cost monitor behind the comparison, the forecast, gradual unfreezing, Ctrl-C handling,
the progress bar."""

from ftcompare.callbacks.cost_monitor import CostMonitor, PeakMemory
from ftcompare.callbacks.forecast import Forecast
from ftcompare.callbacks.gradual_unfreezing import GradualUnfreeze
from ftcompare.callbacks.interrupt import GracefulInterrupt
from ftcompare.callbacks.progress_bar import ProgressBar
from ftcompare.callbacks.training_memory import TrainingMemory

__all__ = [
    "CostMonitor",
    "Forecast",
    "GracefulInterrupt",
    "GradualUnfreeze",
    "PeakMemory",
    "ProgressBar",
    "TrainingMemory",
]
