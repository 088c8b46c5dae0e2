"""ESI: ECG Semantic Integrator — an ECG-text foundation model pipeline."""

from esi._env import apply_offline_env

__version__ = "0.1.0"

# Libraries read these at import time, so they are set before any of them is imported.
apply_offline_env()
