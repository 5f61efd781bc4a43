"""Write the Prometheus Operator's PrometheusRule from ``alerts.yaml``, or check it is current.

``alerts.yaml`` stays the one source of the rules (promtool tests it, a plain Prometheus
loads it); the operator's CRD wraps the very same groups, so this writes them into
``deploy/components/prometheus-operator/prometheusrule.yaml`` rather than anyone keeping
two copies by hand. ``--check`` exits 1 when the written file is out of date (a test runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yaml"
TARGET = HERE.parent / "components" / "prometheus-operator" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yaml by deploy/prometheus/prometheusrule.py:\n"
    "# edit the rules there and run the script again.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as ``|`` blocks, readable as in alerts.yaml."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "latency-oracle",
            "labels": {"app.kubernetes.io/name": "latency-oracle"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
