"""Kubeflow components of ESI: one folder per stage, each a thin ``@dsl.component`` over an esi function.

Every component runs in one image, the project's (see the Dockerfile). It is one setting: the ``ESI_IMAGE``
environment variable at compile time, else :data:`DEFAULT_IMAGE`. Compile with ESI_IMAGE unset to reproduce
the committed pipelines/*.yaml.
"""

from __future__ import annotations

import os

DEFAULT_IMAGE = "ghcr.io/esi-project/esi:0.1.0"
BASE_IMAGE = os.environ.get("ESI_IMAGE", DEFAULT_IMAGE)
# The image ships kfp itself: no pip install at step start (a cluster step may have no index to reach).
COMPONENT_OPTIONS = {"base_image": BASE_IMAGE, "install_kfp_package": False}
