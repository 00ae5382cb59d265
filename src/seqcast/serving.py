"""Old path of the served pyfunc: models logged before the move into packages still load.

A logged model carries its own copy of served_model.py, which MLflow runs on load; copies made
before src/seqcast moved into packages (issue 25) import `seqcast.serving.ForecastModel`.
"""

from seqcast.models.serving import ForecastModel  # noqa: F401
