"""Glue that chains the stages: in-process (``esi run``), and later kfp.local / Kubeflow on a cluster."""
