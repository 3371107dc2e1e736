"""Lightning callbacks: the cost monitor behind the comparison, gradual unfreezing, Ctrl-C handling."""

from ftcompare.callbacks.cost_monitor import CostMonitor, PeakMemory
from ftcompare.callbacks.gradual_unfreezing import GradualUnfreeze
from ftcompare.callbacks.interrupt import GracefulInterrupt

__all__ = ["CostMonitor", "GracefulInterrupt", "GradualUnfreeze", "PeakMemory"]
