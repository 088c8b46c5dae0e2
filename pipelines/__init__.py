"""ESI's Kubeflow pipelines: esi_full (data to served model) and batch_scoring (scheduled scoring)."""
