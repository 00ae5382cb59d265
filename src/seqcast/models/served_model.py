"""The served pyfunc model as code (MLflow's models-from-code): logged as this file, not a pickle.

MLflow copies this file into the logged model and runs it on load; no object is unpickled, so
loading a model cannot run code hidden in a pickle (and MLflow has nothing to warn about).
"""

from mlflow.models import set_model

from seqcast.models.serving import ForecastModel

set_model(ForecastModel())
