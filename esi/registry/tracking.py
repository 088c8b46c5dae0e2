"""The MLflow side of the registry: the client, the experiment (artifacts under ESI_HOME), URIs and versions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esi.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# models:/NAME@ALIAS or models:/NAME/VERSION (MLflow's own forms; stages are deprecated and not accepted).
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
# The short forms of the CLI: NAME@ALIAS, NAME/VERSION, NAME:VERSION, or a bare NAME (its latest version).
_REF = re.compile(r"^(?P<name>[^/@:]+)(?:@(?P<alias>[^/@:]+)|[/:](?P<version>\d+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, named by version number or by alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}"


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> ModelRef; anything else is a RegistryError."""
    m = _URI.match(uri.strip())
    if not m:
        raise RegistryError(
            f"{uri!r} is not a registered-model URI; use models:/NAME@ALIAS (e.g. models:/esi@champion) or "
            "models:/NAME/VERSION (e.g. models:/esi/3); stages (models:/esi/Production) are not used"
        )
    return ModelRef(m["name"], int(m["version"]) if m["version"] else None, m["alias"])


def parse_ref(text: str) -> ModelRef:
    """``esi@champion``, ``esi/3``, ``esi:3``, ``esi`` (latest version) or a models:/ URI -> ModelRef."""
    text = text.strip()
    if text.startswith("models:/"):
        return parse_model_uri(text)
    m = _REF.match(text)
    if not m:
        raise RegistryError(f"{text!r} is not a model reference; use NAME@ALIAS (esi@champion), NAME/VERSION "
                            "(esi/3) or NAME (its latest version)")
    return ModelRef(m["name"], int(m["version"]) if m["version"] else None, m["alias"])


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else MLFLOW_TRACKING_URI / the SQLite file in ESI_HOME."""
    from esi.settings import get_settings

    return uri or get_settings().tracking_uri


def client(uri: str | None = None) -> MlflowClient:
    """An MlflowClient on ``uri`` (default: the settings), with MLflow's fluent API pointed at the same store.

    Only the tracking URI is set (the registry follows it), so the next call without an explicit URI, or any
    other ESI step, points MLflow back at the settings' store.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def is_local_store(uri: str) -> bool:
    """True for a SQLite/file store, whose artifacts we place under ESI_HOME (a server has its own root)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(mlc: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created with its artifacts under ESI_HOME for a local store.

    Without an artifact location MLflow writes to ./mlruns of whatever directory the command runs in.
    """
    from esi.settings import get_settings

    exp = mlc.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if is_local_store(mlc.tracking_uri):
        path = (get_settings().home / "mlartifacts" / name).resolve()
        path.mkdir(parents=True, exist_ok=True)
        location = path.as_uri()
    return str(mlc.create_experiment(name, artifact_location=location))


def _not_found(exc: Exception) -> bool:
    text = str(exc).lower()
    code = getattr(exc, "error_code", "")
    return "not found" in text or "does not exist" in text or code == "RESOURCE_DOES_NOT_EXIST"


def get_version(mlc: MlflowClient, ref: ModelRef) -> ModelVersion:
    """The ModelVersion behind ``ref``; a missing model, version or alias is a RegistryError with the fix."""
    from mlflow.exceptions import MlflowException

    where = mlc.tracking_uri
    try:
        if ref.alias:
            return mlc.get_model_version_by_alias(ref.name, ref.alias)
        if ref.version is not None:
            return mlc.get_model_version(ref.name, str(ref.version))
        versions = mlc.search_model_versions(f"name='{ref.name}'", order_by=["version_number DESC"],
                                             max_results=1)
        if versions:
            return versions[0]
        raise RegistryError(f"registered model {ref.name!r} has no versions in {where}; register one with "
                            "'esi register --run RUN_DIR'")
    except MlflowException as exc:
        if not _not_found(exc):
            raise RegistryError(f"MLflow at {where} failed on {ref.uri}: {exc}") from exc
        known = known_versions(mlc, ref.name)
        if not known:
            hint = "register a run first: esi register --run RUN_DIR"
        else:
            hint = "known: " + ", ".join(
                f"v{v}" + (f" ({', '.join(a)})" if a else "") for v, a in known
            ) + "; see 'esi models list'"
        raise RegistryError(f"{ref.uri} does not exist in {where}; {hint}") from exc


def known_versions(mlc: MlflowClient, name: str) -> list[tuple[int, list[str]]]:
    """(version, aliases) of every version of ``name``, newest first; empty when the model does not exist."""
    try:
        versions = mlc.search_model_versions(f"name='{name}'")
    except Exception:  # listing is only for the error message: never hide the first error behind another
        return []
    return sorted(((int(v.version), list(v.aliases or [])) for v in versions), reverse=True)


def version_label(mv: Any) -> str:
    """'esi v3' for messages."""
    return f"{mv.name} v{mv.version}"


def local_path(uri: str) -> Path | None:
    """The local folder of a file:// artifact URI (None for remote stores)."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and not uri.startswith(("models:", "runs:", "mlflow-artifacts:")):
        return Path(uri)
    return None
