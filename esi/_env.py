"""Offline and telemetry environment variables, set before any heavy library is imported.

Kept free of third-party imports so that ``import esi`` (and ``esi --help``) stays fast.
"""

from __future__ import annotations

import os

# Environment variables that keep every library off the network (telemetry, model hubs).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "True",
    "ANONYMIZED_TELEMETRY": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
}
# Telemetry stays off even on a cluster where model hubs are allowed (ESI_OFFLINE=0).
TELEMETRY_ENV = {k: v for k, v in OFFLINE_ENV.items() if not k.endswith("_OFFLINE")}


def apply_offline_env(offline: bool | None = None) -> None:
    """Set the offline/telemetry variables unless the user set them already."""
    if offline is None:
        offline = os.environ.get("ESI_OFFLINE", "1").lower() not in ("0", "false", "no")
    for key, value in (OFFLINE_ENV if offline else TELEMETRY_ENV).items():
        os.environ.setdefault(key, value)
