"""Serving: the BentoML service (``service``), bento build (``build``) and batch scoring (``score``).

The logic lives in plain modules that the service and ``esi score`` share: request checks and preprocessing
(``inputs``), label sets (``labels``), WFDB uploads (``uploads``), the model wrapper (``engine``) and drift
statistics (``drift``). The BentoML class only adapts them to HTTP.
"""
