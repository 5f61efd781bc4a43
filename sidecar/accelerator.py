"""Who this pod is: accelerator type, role and name, from settings first, else detected.

Models are keyed by accelerator type, so a wrong guess trains the wrong model: an explicit
setting always wins, detection only asks the driver, and anything else is ``unknown``
(which gets a model of its own rather than polluting a real type's).
"""

from __future__ import annotations

import logging
import socket
import subprocess

from latency_oracle.features.accelerators import UNKNOWN_ACCELERATOR, normalize_accelerator
from latency_oracle.features.schema import PodIdentity
from latency_oracle.settings import Settings

log = logging.getLogger(__name__)

DETECT_TIMEOUT_S = 5.0
_NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")


def detect_gpu_name(command: tuple[str, ...] = _NVIDIA_SMI) -> str | None:
    """The first GPU's product name from the driver tool, or None when there is none."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=DETECT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("no accelerator detected with %s: %s", command[0], exc)
        return None
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return names[0] if names else None


def accelerator_type(settings: Settings) -> str:
    """Canonical accelerator type: the setting, else the detected GPU, else ``unknown``."""
    name = settings.accelerator or detect_gpu_name()
    return normalize_accelerator(name) if name else UNKNOWN_ACCELERATOR


def pod_identity(settings: Settings, model: str = "") -> PodIdentity:
    """This pod's identity; ``model`` is the setting when given, else what the engine serves."""
    return PodIdentity(
        pod=settings.pod_name or socket.gethostname(),
        accelerator=accelerator_type(settings),
        role=settings.pod_role,
        model=settings.served_model or model,
    )
