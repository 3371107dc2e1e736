"""Lightning callbacks: the cost monitor behind the comparison, the forecast, gradual unfreezing, Ctrl-C handling."""

from ftcompare.callbacks.cost_monitor import CostMonitor, PeakMemory
from ftcompare.callbacks.forecast import Forecast
from ftcompare.callbacks.gradual_unfreezing import GradualUnfreeze
from ftcompare.callbacks.interrupt import GracefulInterrupt
from ftcompare.callbacks.training_memory import TrainingMemory

__all__ = ["CostMonitor", "Forecast", "GracefulInterrupt", "GradualUnfreeze", "PeakMemory", "TrainingMemory"]
