"""Cluster settings of the pipeline steps (kfp-kubernetes): the data PVC, the API-key Secret, GPU placement.

kfp.local ignores all of them, so the same pipeline runs on a laptop; the values match k8s/base.
"""

from __future__ import annotations

from kfp import kubernetes

from esi.pipeline.jobspec import A100_PRODUCT

DATA_PVC = "esi-data"  # k8s/base/pvc.yaml
DATA_MOUNT = "/data"
API_KEY_SECRET = "esi-api-keys"  # k8s/base/secrets.yaml (created by the operator, referenced here)
GPU = "nvidia.com/gpu"


def on_cluster(task, *, cpu: str = "1", memory: str = "4Gi", secret: bool = False, gpu: int = 0):
    """Mount the PVC, size the step, and for GPU steps: A100 node selector, GPU toleration, /dev/shm in RAM."""
    kubernetes.mount_pvc(task, pvc_name=DATA_PVC, mount_path=DATA_MOUNT)
    kubernetes.empty_dir_mount(task, volume_name="tmp", mount_path="/tmp", size_limit="10Gi")
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    if secret:
        kubernetes.use_secret_as_env(task, secret_name=API_KEY_SECRET,
                                     secret_key_to_env={"openai-api-key": "OPENAI_API_KEY"}, optional=True)
    if gpu:
        task.set_accelerator_type(GPU).set_accelerator_limit(gpu)
        kubernetes.add_node_selector(task, label_key="nvidia.com/gpu.product", label_value=A100_PRODUCT)
        kubernetes.add_toleration(task, key=GPU, operator="Exists", effect="NoSchedule")
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit="16Gi")
    return task
