"""Online quantile learners, calibration, evaluation and the per-accelerator registry.

Public names are exported here (``from latency_oracle.models import ModelRegistry``) and
imported on first use, so reading a model key does not load XGBoost and River.
"""

from latency_oracle.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "registry": ("ModelRegistry", "LearnReport", "LearnScope"),
        "config": ("ModelConfig",),
        "prompt_units": ("PromptUnit",),
        "keys": ("ModelKey", "Target"),
        "learner": ("Learner", "BaseLearner", "NotFittedError", "QuantileFunction"),
        "river_linear": ("RiverQuantileLinear",),
        "xgboost_learner": ("IncrementalXGBoost",),
        "model_set": ("ModelSet",),
        "status": ("KeyStatus", "LearnerStatus"),
        "persistence.snapshot": ("encode_snapshot", "decode_snapshot", "SnapshotError"),
        "persistence.allowed_types": ("SNAPSHOT_TYPES",),
    },
)
