"""MLflow models-from-code entry point: MLflow runs this file to get the ESI pyfunc, so no Python object is
pickled into the model (the weights are a state dict, read with torch.load(weights_only=True))."""

import mlflow

from esi.registry.pyfunc import EsiPyfunc

mlflow.models.set_model(EsiPyfunc())
