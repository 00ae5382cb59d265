"""seqcast: train, compare and ship recurrent forecasters honestly and reproducibly."""

import os

# seqcast runs offline: no telemetry or analytics calls, and quieter TensorFlow start-up.
for _key, _value in {
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
