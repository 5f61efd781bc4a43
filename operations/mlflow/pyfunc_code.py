"""The code MLflow runs to load a registered version (models-from-code: nothing pickled)."""

import mlflow.models

from latency_oracle.operations.mlflow.pyfunc import make_model

mlflow.models.set_model(make_model())
