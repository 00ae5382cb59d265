"""The registry's gate and aliases, its lock, the run report and the store checks."""
