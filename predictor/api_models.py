"""Request and response bodies of the native REST API.

Endpoints that take "one or many" accept either a JSON object or a JSON array; a callable
discriminator picks the branch first, so a validation error names the field of the branch
the client meant (``["body", "one", "input_tokens"]``) instead of listing both.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Discriminator, Field, Tag


def _one_or_many(value: Any) -> str:
    return "many" if isinstance(value, list) else "one"


def one_or_many(item: type[BaseModel], max_items: int) -> Any:
    """The body type "an ``item`` or a list of 1..max_items of them"."""
    many = Annotated[list[item], Field(min_length=1, max_length=max_items)]  # type: ignore[valid-type]
    return Annotated[
        Annotated[item, Tag("one")] | Annotated[many, Tag("many")],
        Discriminator(_one_or_many),
    ]


class ModelsUsed(BaseModel):
    ttft: str = Field(description="learner@accelerator that answered TTFT, or 'prior'.")
    tpot: str = Field(description="learner@accelerator that answered TPOT, or 'prior'.")


class KeysUsed(BaseModel):
    ttft: str = Field(
        description="Key that answered TTFT: its own (H100/ttft or H100/ttft/<served model>), "
        "the global model scaled to the served model (global/ttft/<served model>), the "
        "global model (global/ttft), or 'prior'."
    )
    tpot: str = Field(description="Key that answered TPOT, as for ttft.")


class Prediction(BaseModel):
    pod: str
    accelerator: str
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    model: ModelsUsed
    key: KeysUsed
    cold: bool = Field(
        description="True until the (accelerator, served model) key's own model is trained."
    )
    output_tokens: dict[str, float] = Field(
        description="Output tokens the request will generate, p50 and p90, learned per served "
        "model by prompt size and max_tokens (cut at max_tokens when it is set)."
    )


class PredictionList(BaseModel):
    predictions: list[Prediction]


class ObservationReceipt(BaseModel):
    accepted: int
    duplicates: int


class WindowScoresOut(BaseModel):
    samples: int
    pinball_ms: dict[str, float | None]
    coverage: dict[str, float | None]
    mae_ms: float | None


class LearnerOut(BaseModel):
    name: str
    state: str
    samples: int
    failures: int
    last_error: str | None
    window: WindowScoresOut


class ModelOut(BaseModel):
    key: str = Field(description="accelerator/target, then /served model when it names one.")
    accelerator: str
    target: str
    served_model: str = Field(description="Served model of the key; '' for any.")
    samples: int = Field(description="Observations the key's models learned.")
    observed: int = Field(
        description="Observations of the key counted, learned or not (Redis mode: the global "
        "model learns a sample of each shard, a hot key one past its rate ceiling)."
    )
    learned_share: float = Field(description="samples / observed: the share learned.")
    champion: str | None
    last_update: float | None
    serving: bool
    scaled_models: list[str] = Field(
        description="Global keys: served models with their own scale over the global model."
    )
    learners: list[LearnerOut]


class ModelList(BaseModel):
    models: list[ModelOut]


class Health(BaseModel):
    status: str
    problems: list[str] = []


class Ready(Health):
    compute: dict[str, str] = Field(
        default_factory=dict,
        description="each inner loop (feature_rows, forest_walk): compiled, or the slower "
        "numpy fallback of an install without a C compiler",
    )


class Detail(BaseModel):
    """An error that is not about a field (conflicts, unavailability)."""

    detail: str
