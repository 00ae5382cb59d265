"""Networks, the forecaster, training, and their MLflow side: runs, the pyfunc model."""
