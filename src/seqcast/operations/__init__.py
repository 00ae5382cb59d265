"""Around the pipeline: the refit, the server, ledger, monitoring, search, experiments."""
