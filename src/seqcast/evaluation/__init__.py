"""Every model scored on identical windows: holdout scores, rolling-origin backtest, intervals.

- scores: metrics per model, split and horizon step; the comparison table (pure, no MLflow)
- backtest: refits on each fold's own history, per-origin scores, the decision
- intervals: conformal bands from out-of-sample errors, coverage and interval scores
- stage: the evaluate stage that ties them together and logs to MLflow

Nothing is imported here, so that a module using one of them does not depend on the rest.
"""
