"""The whole HTTP API fuzzed from its own OpenAPI document (schemathesis, in-process ASGI).

Every operation gets valid and invalid requests generated from the schema; each answer
must not be a 5xx, must match the schema the document declares for its status, and every
4xx rejection must say which field (a ``loc`` per error). The counts are written to
``tests/artifacts/fuzz.json`` for the figures of docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream

ARTIFACT = Path(__file__).parent / "artifacts" / "fuzz.json"
EXAMPLES_PER_OPERATION = 100
# Status codes whose body is not about a field: auth, conflicts, "retry later" answers.
_NOT_FIELD_ERRORS = {401, 404, 405, 409}


@pytest.fixture
def fuzzed_app(settings: Settings, stream: SyntheticStream) -> Iterator[Any]:
    """A trained predictor, so every answer comes from learned models, not the prior."""
    service = OracleService(settings)
    app = create_app(settings, service)
    service.start()  # what the lifespan does; the ASGI client here does not run it
    service.ingest(stream.observations[:600])
    assert service.wait_learned(600, timeout_s=30)
    try:
        yield app
    finally:
        service.stop()


def _field_named(status: int, body: object) -> bool:
    """A 4xx names the field: each error in ``detail`` carries a non-empty ``loc``."""
    if status in _NOT_FIELD_ERRORS:
        return True
    detail = body.get("detail") if isinstance(body, dict) else None
    return (
        isinstance(detail, list)
        and bool(detail)
        and all(isinstance(e, dict) and e.get("loc") for e in detail)
    )


def test_every_operation_survives_fuzzing(fuzzed_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    statuses: Counter[int] = Counter()
    unnamed: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION // 2,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )
                if 400 <= response.status_code < 500 and not _field_named(
                    response.status_code, response.json()
                ):
                    unnamed.append(f"{case.operation.label} {response.status_code} {response.text}")

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode == GenerationMode.NEGATIVE, operation.label
    requests = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(
        json.dumps(
            {
                "operations": operations,
                "requests": requests,
                "server_errors": server_errors,
                "statuses": dict(sorted(statuses.items())),
            },
            indent=2,
        )
    )
    print(f"fuzzed {operations} operations with {requests} requests: {dict(statuses)}")
    assert operations >= 12
    assert server_errors == 0
    assert not unnamed, unnamed[:5]
