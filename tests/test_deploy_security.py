"""The manifests wire Redis's ACL users, their passwords, the snapshot key and the Redis
NetworkPolicy together: every role logs in as its own user with its own Secret key, and
Redis's start script renders exactly the ACL the Redis tests load (``render_acl``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from redis_support import ACL_TEMPLATE, render_acl
from test_deploy_manifests import find, needs_kubectl, rendered

ROLES = {"latency-oracle-predictor": "predictor", "latency-oracle-trainer": "trainer"}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_ref(env: dict[str, Any]) -> tuple[str, str]:
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def _redis_container() -> dict[str, Any]:
    redis = find(rendered("overlays/dev"), "StatefulSet", "latency-oracle-redis")
    [container] = redis["spec"]["template"]["spec"]["containers"]
    return container


@needs_kubectl
def test_redis_loads_the_acl_source_with_every_roles_password() -> None:
    docs = rendered("overlays/dev")
    redis = find(docs, "StatefulSet", "latency-oracle-redis")["spec"]["template"]["spec"]
    [template] = [v for v in redis["volumes"] if v["name"] == "acl-template"]
    config_map = find(docs, "ConfigMap", template["configMap"]["name"])
    assert config_map["data"]["redis-users.acl"] == ACL_TEMPLATE.read_text()
    env = _env(redis["containers"][0])
    users = find(docs, "Secret", "latency-oracle-redis-users")
    for role in ("admin", "trainer", "predictor", "sidecar"):
        assert _secret_ref(env[f"REDIS_PASSWORD_{role.upper()}"]) == (
            users["metadata"]["name"],
            role,
        )
        assert role in users["data"]


@needs_kubectl
def test_the_start_script_renders_what_the_acl_tests_load(tmp_path: Path) -> None:
    container = _redis_container()
    script = container["command"][2]
    (tmp_path / "acl").mkdir()
    (tmp_path / "acl" / "redis-users.acl").write_text(ACL_TEMPLATE.read_text())
    local = script.replace("/etc/redis-acl", str(tmp_path / "acl")).replace(
        "/run/redis", str(tmp_path)
    )
    passwords = {"admin": "a1", "trainer": "t2", "predictor": "p3", "sidecar": "s4"}
    env = {f"REDIS_PASSWORD_{k.upper()}": v for k, v in passwords.items()}
    env |= {"LATENCY_ORACLE_REDIS_KEY_PREFIX": "my-prefix", "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", "-c", local, "redis", "true"], env=env, check=True, timeout=10)
    assert (tmp_path / "users.acl").read_text() == render_acl("my-prefix", passwords)
    env["REDIS_PASSWORD_SIDECAR"] = "with space"  # would split the ACL rule: refused
    failed = subprocess.run(["sh", "-c", local, "redis", "true"], env=env, timeout=10)
    assert failed.returncode != 0
    assert container["command"][3:] == ["redis"] and container["args"][0] == "redis-server"


@needs_kubectl
@pytest.mark.parametrize("deployment", sorted(ROLES))
def test_predictors_and_trainers_log_in_as_their_own_user(deployment: str) -> None:
    docs = rendered("overlays/dev")
    [container] = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    role = ROLES[deployment]
    assert env["LATENCY_ORACLE_REDIS_USERNAME"]["value"] == role
    assert _secret_ref(env["LATENCY_ORACLE_REDIS_PASSWORD"]) == ("latency-oracle-redis-users", role)
    name, key = _secret_ref(env["LATENCY_ORACLE_SNAPSHOT_KEY"])
    assert key in find(docs, "Secret", name)["data"]


@needs_kubectl
def test_sidecars_log_in_as_sidecar_and_only_labelled_roles_reach_redis() -> None:
    docs = rendered("examples/vllm-sidecar")
    pools = [d for d in docs if d["kind"] == "Deployment"]
    assert pools  # one Deployment per GPU pool
    for vllm in pools:
        pod = vllm["spec"]["template"]
        [sidecar] = [
            c for c in pod["spec"]["initContainers"] if c["name"] == "latency-oracle-sidecar"
        ]
        env = _env(sidecar)
        assert env["LATENCY_ORACLE_REDIS_USERNAME"]["value"] == "sidecar"
        assert _secret_ref(env["LATENCY_ORACLE_REDIS_PASSWORD"])[1] == "password"

    base = rendered("overlays/dev")
    policy = find(base, "NetworkPolicy", "latency-oracle-redis")["spec"]
    redis_labels = find(base, "StatefulSet", "latency-oracle-redis")["spec"]["template"]
    assert (
        policy["podSelector"]["matchLabels"].items() <= redis_labels["metadata"]["labels"].items()
    )
    [rule] = policy["ingress"]
    own, sidecars = rule["from"]
    assert set(own["podSelector"]["matchExpressions"][0]["values"]) == {"predictor", "trainer"}
    assert sidecars["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    for name in ROLES:
        labels = find(base, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] in ("predictor", "trainer")
