"""POST /v1/route: place on the pod that meets the SLO, shed or queue, spread bursts."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from statistics import NormalDist

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latency_oracle.features.engineering import NUMBER_FIELDS, RequestColumns
from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import PredictionRequest
from latency_oracle.features.store import InProcessObservationStore
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.attainment import Predicted
from latency_oracle.routing.inflight_ledger import WAITING, InFlightLedger
from latency_oracle.routing.live_candidates import LiveCandidates
from latency_oracle.routing.policies import PhaseView, SloAttainment
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream

SHAPE = {"input_tokens": 1_500, "max_tokens": 200}
LIGHT = {
    "accelerator": "H100",
    "running_requests": 6,
    "waiting_requests": 0,
    "kv_cache_usage": 0.15,
    "prefill_tokens_in_flight": 200,
    "decode_tokens_in_flight": 1_500,
}
HEAVY = {
    "accelerator": "H100",
    "running_requests": 30,
    "waiting_requests": 6,
    "kv_cache_usage": 0.6,
    "prefill_tokens_in_flight": 8_000,
    "decode_tokens_in_flight": 10_000,
}


STATES = {"light": LIGHT, "heavy": HEAVY}


def pod(name: str, state: dict[str, object], **extra: object) -> dict[str, object]:
    return {"pod": name, **state, **extra}


@pytest.fixture(scope="module")
def warm_service(
    tmp_path_factory: pytest.TempPathFactory, stream: SyntheticStream
) -> OracleService:
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("state"),
        min_samples=100,
        xgb_boost_every=128,
        xgb_window=512,
        snapshot_interval_s=3600,
    )
    service = OracleService(settings)
    service.models.learn(stream.observations)
    return service


@pytest.fixture
def client(warm_service: OracleService) -> Iterator[TestClient]:
    with TestClient(create_app(warm_service.settings, warm_service)) as test_client:
        yield test_client


def p90(service: OracleService, state: dict[str, object], **extra: object) -> tuple[float, float]:
    batch = service.predict([PredictionRequest(**state, **SHAPE, **extra)])
    q = service.config.headline_index
    return float(batch.ttft_ms[0, q]), float(batch.tpot_ms[0, q])


def route(client: TestClient, **body: object) -> dict:
    """One route call; pods without a scrape time are stamped as freshly scraped, so
    placements of earlier calls in the same test do not count against them."""
    if "pods" in body:
        body["pods"] = [{"scraped_at": time.time(), **p} for p in body["pods"]]
    response = client.post("/v1/route", json={**SHAPE, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_only_pod_that_meets_the_slo_gets_the_request(
    client: TestClient, warm_service: OracleService
) -> None:
    ttft = {name: p90(warm_service, state)[0] for name, state in STATES.items()}
    fast, slow = sorted(ttft, key=ttft.__getitem__)
    slo = {"ttft_ms": (ttft[fast] * ttft[slow]) ** 0.5}
    pods = [pod(name, state) for name, state in STATES.items()]
    for policy in ("headroom", "least-latency"):
        decision = route(client, slo=slo, policy=policy, headroom_mode="pack", pods=pods)
        assert decision["decision"] == "place"
        assert decision["pod"] == fast
        assert decision["policy"] == policy
        by_pod = {c["pod"]: c for c in decision["candidates"]}
        assert by_pod[slow]["meets_slo"] is False
        assert by_pod[slow]["ttft_headroom_ms"] < 0 < by_pod[fast]["ttft_headroom_ms"]
        assert by_pod[fast]["ttft_headroom_ms"] == pytest.approx(
            slo["ttft_ms"] - by_pod[fast]["ttft_ms"]
        )
        assert by_pod[fast]["tpot_headroom_ms"] is None
        for name, state in STATES.items():  # routing's cheaper path: the same p90s
            assert (by_pod[name]["ttft_ms"], by_pod[name]["tpot_ms"]) == pytest.approx(
                p90(warm_service, state), rel=1e-9
            )


def test_no_pod_meets_the_slo_sheds_interactive_and_queues_batch(
    client: TestClient, warm_service: OracleService
) -> None:
    best = min(p90(warm_service, state)[0] for state in STATES.values())
    slo = {"ttft_ms": best / 2}
    pods = [pod(name, state) for name, state in STATES.items()]
    shed = route(client, slo=slo, pods=pods)
    assert shed["decision"] == "shed"
    assert shed["pod"] is None
    # Retry when the best pod's TTFT overshoot has drained.
    assert shed["retry_after_ms"] == pytest.approx(best - slo["ttft_ms"], rel=0.01)
    assert "no candidate meets the SLO" in shed["reason"]
    queued = route(client, slo=slo, priority="batch", pods=pods)
    assert queued["decision"] == "queue"
    assert queued["retry_after_ms"] == shed["retry_after_ms"]


def test_pack_prefers_least_headroom_and_spread_the_most(
    client: TestClient, warm_service: OracleService
) -> None:
    ttft = {name: p90(warm_service, state)[0] for name, state in STATES.items()}
    fast, slow = sorted(ttft, key=ttft.__getitem__)
    pods = [pod(name, state) for name, state in STATES.items()]
    slo = {"ttft_ms": 1.01 * ttft[slow]}
    gap = (ttft[slow] - ttft[fast]) / slo["ttft_ms"]
    assert gap > warm_service.settings.route_tie_tolerance  # not a near-tie: no coin flip
    for mode, chosen in (("pack", slow), ("spread", fast)):
        decision = route(client, slo=slo, policy="headroom", headroom_mode=mode, pods=pods)
        assert decision["pod"] == chosen


def test_a_burst_of_identical_requests_spreads_over_pods(client: TestClient) -> None:
    now = time.time()
    pods = [pod(f"vllm-{i}", LIGHT, scraped_at=now) for i in range(4)]
    body = {**SHAPE, "slo": {"ttft_ms": 60_000.0}, "pods": pods}

    def call(_: int) -> str:
        response = client.post("/v1/route", json=body)
        assert response.status_code == 200, response.text
        return response.json()["pod"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        placed = Counter(pool.map(call, range(50)))
    assert sum(placed.values()) == 50
    assert set(placed) == {p["pod"] for p in pods}
    assert max(placed.values()) <= 20, placed


def test_placements_count_against_a_pod_until_a_newer_scrape(client: TestClient) -> None:
    scraped = time.time()
    pods = [pod("a", LIGHT, scraped_at=scraped), pod("b", LIGHT, scraped_at=scraped)]
    first = route(client, pods=pods)["pod"]
    second = route(client, pods=pods)
    placed = {c["pod"]: c["placed_since_scrape"] for c in second["candidates"]}
    assert placed[first] == 1.0
    # A scrape after both placements already shows them: nothing is added twice.
    fresh = [{**p, "scraped_at": time.time() + 1} for p in pods]
    again = route(client, pods=fresh)
    assert {c["placed_since_scrape"] for c in again["candidates"]} == {0.0}
    by_pod = {c["pod"]: c["ttft_ms"] for c in again["candidates"]}
    assert by_pod["a"] == pytest.approx(by_pod["b"])


def test_cold_models_fall_back_to_the_heuristic_and_say_so(settings: Settings) -> None:
    service = OracleService(settings)
    with TestClient(create_app(settings, service)) as client:
        decision = route(
            client,
            slo={"ttft_ms": 1.0},
            pods=[pod("heavy", HEAVY), pod("light", LIGHT)],
        )
    assert decision["decision"] == "place"
    assert decision["pod"] == "light"
    assert decision["cold"] is True
    assert decision["policy"] == "heuristic"
    assert "models cold (H100)" in decision["reason"]
    assert "least queued prefill work" in decision["reason"]


def test_disaggregated_pool_places_prefill_and_decode_separately(
    client: TestClient, warm_service: OracleService
) -> None:
    pods = [
        pod(f"{role}-{name}", state, role=role)
        for role in ("prefill", "decode")
        for name, state in STATES.items()
    ]
    ttft = {
        p["pod"]: p90(warm_service, LIGHT if "light" in p["pod"] else HEAVY, role="prefill")[0]
        for p in pods
        if p["role"] == "prefill"
    }
    tpot = {
        p["pod"]: p90(warm_service, LIGHT if "light" in p["pod"] else HEAVY, role="decode")[1]
        for p in pods
        if p["role"] == "decode"
    }
    decision = route(client, policy="least-latency", pods=pods)
    assert decision["decision"] == "place"
    assert decision["pod"] == min(ttft, key=ttft.__getitem__)
    assert decision["decode_pod"] == min(tpot, key=tpot.__getitem__)
    assert decision["reason"].startswith(f"prefill {decision['pod']}")


def test_half_a_disaggregated_pool_is_a_conflict(client: TestClient) -> None:
    response = client.post("/v1/route", json={**SHAPE, "pods": [pod("p", LIGHT, role="prefill")]})
    assert response.status_code == 409
    assert "no decode pods" in response.json()["detail"]


def test_without_pods_the_live_pods_of_the_model_are_candidates(
    client: TestClient, warm_service: OracleService
) -> None:
    response = client.post("/v1/route", json={**SHAPE, "model": "llama-nobody-serves"})
    assert response.status_code == 409
    assert "no candidate pods" in response.json()["detail"]
    warm_service.store.put_pod_state(PodState(pod="live-0", model="llama", **LIGHT))
    warm_service.store.put_pod_state(PodState(pod="other", model="mistral", **LIGHT))
    decision = route(client, model="llama")
    assert decision["pod"] == "live-0"
    assert [c["pod"] for c in decision["candidates"]] == ["live-0"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slo": {"ttft_ms": -1}}, "ttft_ms"),
        ({"policy": "fastest"}, "policy"),
        ({"priority": "urgent"}, "priority"),
        ({"pods": []}, "pods"),
        ({"pods": [pod("a", LIGHT), pod("a", HEAVY)]}, "unique"),
        ({"pods": [pod("a", LIGHT, prefix_cache_hit_tokens=9_999)]}, "prefix_cache_hit_tokens"),
        ({"pods": [pod("a", {**LIGHT, "kv_cache_usage": 1.5})]}, "kv_cache_usage"),
    ],
)
def test_malformed_route_requests_are_422_naming_the_field(
    client: TestClient, body: dict, field: str
) -> None:
    response = client.post("/v1/route", json={**SHAPE, **body})
    assert response.status_code == 422
    assert field in response.text


def test_ledger_counts_placements_until_scrape_or_ttl() -> None:
    now = [1_000.0]
    ledger = InFlightLedger(ttl_s=2.0, clock=lambda: now[0])
    delta = [1.0, 0.0, 100.0, 0.0]
    ledger.place("a", np.array(delta))
    now[0] += 0.5
    ledger.place("a", np.array(delta))
    assert ledger.pending(["a", "b"], [999.0, None])[:, WAITING].tolist() == [2.0, 0.0]
    assert ledger.pending(["a"], [1_000.1])[0, WAITING] == 1.0  # the scrape saw the first
    now[0] += 2.0
    assert ledger.pending(["a"], [None])[0, WAITING] == 0.0  # TTL passed
    assert len(ledger) == 0


def test_live_pods_are_converted_to_candidates_once_per_state() -> None:
    store = InProcessObservationStore(capacity=10, dedup_window=10, max_pods=2)
    live = LiveCandidates(store, max_pods=2)
    store.put_pod_state(PodState(pod="a", updated_at=1_000.0, **LIGHT))
    (first,) = live(None)
    assert first.pod == "a" and first.scraped_at == 1_000.0
    assert live(None)[0] is first  # the same state: the same candidate, not a new one
    store.put_pod_state(PodState(pod="a", updated_at=1_001.0, **HEAVY))
    (rescraped,) = live(None)
    assert rescraped.scraped_at == 1_001.0
    assert rescraped.running_requests == HEAVY["running_requests"]
    for name in "bcdef":  # pods come and go: the conversions kept stay bounded
        store.put_pod_state(PodState(pod=name, updated_at=1_002.0, **LIGHT))
        assert name in [c.pod for c in live(None)]
        assert len(live) <= 4


def test_meet_probability_follows_the_lognormal_between_served_quantiles() -> None:
    levels = (0.5, 0.9)
    z90 = NormalDist().inv_cdf(0.9)
    predicted = Predicted(np.array([[100.0, 100.0 * np.exp(0.5 * z90)]]), levels, 1)
    for slo in (60.0, 100.0, 150.0, 400.0):
        expected = NormalDist().cdf(np.log(slo / 100.0) / 0.5)
        assert predicted.meet_probability(slo)[0] == pytest.approx(expected, abs=1e-6)


def _view(attainment, harm, ttft, kv) -> PhaseView:
    n = len(attainment)
    numbers = {name: np.zeros(n) for name in NUMBER_FIELDS} | {"kv_cache_usage": np.array(kv)}
    columns = RequestColumns.of(
        np.array(["H100"] * n, dtype=object),
        np.array([f"p{i}" for i in range(n)], dtype=object),
        **numbers,
    )
    return PhaseView(
        "pod",
        np.ones(n, bool),
        np.zeros(n),
        np.array(ttft, dtype=float) + 1_000.0,  # the decode adds the same to every pod
        np.array(ttft, dtype=float),
        columns,
        attainment=np.array(attainment, dtype=float),
        harm=np.array(harm, dtype=float),
    )


def test_slo_attainment_weighs_the_streams_a_decode_would_slow() -> None:
    policy = SloAttainment(tolerance=0.05)
    rng = random.Random(0)
    # Pod 0 is faster but its batch would lose streams to the new decode: pod 1 wins.
    assert policy.choose(_view([0.99, 0.97], [0.6, 0.0], [100, 300], [0.2, 0.2]), rng).index == 1
    # Near-ties in attainment: the sooner first token, unless its KV cache is much fuller.
    assert policy.choose(_view([0.99, 0.98], [0, 0], [100, 120], [0.2, 0.2]), rng).index == 0
    assert policy.choose(_view([0.99, 0.98], [0, 0], [100, 120], [0.9, 0.1]), rng).index == 1
    # A pod that misses the SLO is not a near-tie, however fast.
    assert policy.choose(_view([0.3, 0.95], [0, 0], [50, 400], [0.1, 0.1]), rng).index == 1


def test_one_cold_type_is_answered_by_the_global_model_not_the_heuristic(
    client: TestClient,
) -> None:
    """H100 and the global model are trained; an MI300X pod has no samples of its own."""
    pods = [pod("h100", LIGHT), pod("mi300x", {**HEAVY, "accelerator": "MI300X"})]
    decision = route(client, slo={"ttft_ms": 60_000.0}, pods=pods)
    assert decision["decision"] == "place"
    assert decision["cold"] is False and decision["policy"] != "heuristic"
    by_pod = {c["pod"]: c for c in decision["candidates"]}
    assert by_pod["mi300x"]["cold"] is True and by_pod["h100"]["cold"] is False


def test_a_tail_slo_is_judged_on_the_p99(client: TestClient, warm_service: OracleService) -> None:
    batch = warm_service.predict([PredictionRequest(**LIGHT, **SHAPE)])
    p90_ms, p99_ms = float(batch.ttft_ms[0, 1]), float(batch.ttft_ms[0, 2])
    slo = {"ttft_ms": (p90_ms + p99_ms) / 2}
    pods = [pod("light", LIGHT)]
    assert route(client, slo=slo, pods=pods)["decision"] == "place"
    tail = route(client, slo={**slo, "quantile": 0.99}, pods=pods)
    assert tail["decision"] == "shed"
    assert tail["candidates"][0]["ttft_ms"] == pytest.approx(p99_ms)
