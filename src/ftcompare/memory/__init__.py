"""Training memory by category: tracked on one step of a run, or estimated before it under fake tensors."""
