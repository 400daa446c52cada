"""The deploy engine: ships a workload with a strategy, watches it, rolls back when it fails."""
