"""Registered versions as MLflow models a reviewer can load: pyfunc and xgboost flavours.

``mlflow.pyfunc.load_model("models:/latency-oracle-H100-ttft@champion")`` gives a model
whose ``predict`` takes a DataFrame of request fields (the native prediction API's, one row
per request) and returns the served quantiles in ms, one column per quantile (p50, p90,
p99). It is logged as code (MLflow's models-from-code, ``pyfunc_code.py``), not as a
pickled object; its one artifact is the version's model-set snapshot in the service's own
format, read with the same checks as a restart. Where the version's learners include
XGBoost, the booster is logged too, in MLflow's xgboost flavour, for inspection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_oracle.models.keys import Target
from latency_oracle.operations.metrics import quantile_label

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.model import ModelInfo

    from latency_oracle.models.model_set import ModelSet

SNAPSHOT_ARTIFACT = "snapshot"
PYFUNC_NAME = "model"
XGBOOST_NAME = "xgboost"
# Not "quantiles": MLflow logs a model config as run params, and the run has that one.
QUANTILES_CONFIG = "served_quantiles"
CODE_FILE = Path(__file__).with_name("pyfunc_code.py")

# One request, as the native API takes it: the input example and the signature's source.
EXAMPLE_REQUEST: dict[str, Any] = {
    "accelerator": "H100",
    "pod": "vllm-0",
    "model": "",
    "input_tokens": 1024,
    "prefix_cache_score": 0.0,
    "output_tokens": 0,
    "max_tokens": 256,
    "running_requests": 4,
    "waiting_requests": 0,
    "kv_cache_usage": 0.25,
    "prefill_tokens_in_flight": 0,
    "decode_tokens_in_flight": 0,
}


def _load_predictor() -> type:
    """The pyfunc class, defined lazily: importing mlflow is not free, and only this needs it."""
    import mlflow.pyfunc

    class LatencyOracleModel(mlflow.pyfunc.PythonModel):
        """One model key's registered version, answering a DataFrame of requests."""

        def load_context(self, context: Any) -> None:
            from latency_oracle.models.persistence.snapshot import decode_snapshot
            from latency_oracle.models.registry import ModelRegistry

            quantiles = tuple(context.model_config[QUANTILES_CONFIG])
            data = Path(context.artifacts[SNAPSHOT_ARTIFACT]).read_bytes()
            ((key, model_set),) = decode_snapshot(data, quantiles)["model_sets"].items()
            self.key = key
            self.quantiles = quantiles
            self.registry = ModelRegistry(model_set.config)
            self.registry.merge_state({key: model_set})

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            import pandas as pd

            from latency_oracle.features.engineering import RequestColumns
            from latency_oracle.features.schema import PredictionRequest

            requests = [
                PredictionRequest.model_validate(
                    {"accelerator": self.key.accelerator}
                    | {name: value for name, value in row.items() if not pd.isna(value)}
                )
                for row in model_input.to_dict("records")
            ]
            batch = self.registry.predict(RequestColumns.from_requests(requests))
            values = batch.ttft_ms if self.key.target is Target.TTFT else batch.tpot_ms
            return pd.DataFrame(values, columns=[quantile_label(q) for q in self.quantiles])

    return LatencyOracleModel


def make_model() -> Any:
    """The pyfunc instance ``pyfunc_code.py`` hands to MLflow."""
    return _load_predictor()()


def log_version_models(snapshot: Path, quantiles: tuple[float, ...]) -> ModelInfo:
    """Log the pyfunc (and any XGBoost booster) in the active run; the pyfunc's info."""
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from latency_oracle.models.persistence.snapshot import decode_snapshot

    ((_, model_set),) = decode_snapshot(snapshot.read_bytes(), quantiles)["model_sets"].items()
    example = pd.DataFrame([EXAMPLE_REQUEST])
    output = pd.DataFrame([[1.0] * len(quantiles)], columns=[quantile_label(q) for q in quantiles])
    info = mlflow.pyfunc.log_model(
        name=PYFUNC_NAME,
        python_model=str(CODE_FILE),
        artifacts={SNAPSHOT_ARTIFACT: str(snapshot)},
        model_config={QUANTILES_CONFIG: list(quantiles)},
        # Named, not inferred: inferring runs the model in a subprocess, seconds per version.
        pip_requirements=["latency-oracle"],
        signature=ModelSignature(
            Schema([_column(name, value) for name, value in EXAMPLE_REQUEST.items()]),
            Schema([ColSpec("double", name) for name in output.columns]),
        ),
        input_example=example,
    )
    booster = _xgboost_booster(model_set)
    if booster is not None:
        import mlflow.xgboost

        mlflow.xgboost.log_model(
            booster, name=XGBOOST_NAME, model_format="ubj", pip_requirements=["xgboost"]
        )
    return info


def _column(name: str, example: object) -> Any:
    """A request field's column: only the prompt length is required, as in the API."""
    from mlflow.types import ColSpec

    kind = {str: "string", int: "long", float: "double"}[type(example)]
    return ColSpec(kind, name, required=name == "input_tokens")


def _xgboost_booster(model_set: ModelSet) -> Any:
    """The booster of the model set's XGBoost learner, if it has fitted one."""
    for slot in model_set.slots:
        booster = getattr(slot.learner, "booster", None)
        if booster is not None:
            return booster
    return None
