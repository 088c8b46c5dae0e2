"""Domain errors. Each message says what was wrong, where (file, field), and how to fix it."""

from __future__ import annotations


class EsiError(Exception):
    """Base class of every error ESI raises on purpose."""


class ConfigError(EsiError, ValueError):
    """A setting, option or config file is invalid."""


class DataError(EsiError, ValueError):
    """An input file or field is missing or malformed."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.path, self.field, self.fix = path, field, fix
        parts = [message]
        if path:
            parts.append(f"file: {path}")
        if field:
            parts.append(f"field: {field}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts))


class RecordReadError(DataError):
    """One ECG record could not be read; batch jobs put it in the rejects table and carry on."""


class DatasetNotFoundError(EsiError, FileNotFoundError):
    """A dataset root, store or file does not exist where it was expected."""


class StoreError(EsiError):
    """A store on disk is incomplete, corrupt or of another schema version."""


class ValidationFailed(EsiError):
    """A critical data expectation failed."""


class VocabularyError(EsiError, KeyError):
    """A condition id or label is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KnowledgeBaseError(EsiError):
    """The knowledge base is missing, or was built with another embedding model."""


class LLMError(EsiError):
    """The language model endpoint failed or refused the request."""


class ModelNotFoundError(EsiError, FileNotFoundError):
    """A model name, Hugging Face id or local path could not be resolved."""


class CheckpointError(EsiError):
    """A checkpoint is missing, unreadable, or does not match the model (missing/unexpected keys)."""


class TrainingError(EsiError):
    """Training cannot go on (for example a non-finite loss that persists)."""


class EvaluationError(EsiError):
    """A benchmark or evaluation mode cannot run on the given data."""


class RegistryError(EsiError):
    """A registered model is missing, has no such alias/version, or its artifacts fail their digest check."""


class PromotionRefused(EsiError):
    """A promotion gate failed: the alias stays where it was."""


class ServingError(EsiError):
    """The service or the bento cannot be built or started (missing model in the store, bad build config)."""


class RequestError(EsiError, ValueError):
    """A request to the service is malformed: the message says which field and the accepted range (HTTP 4xx)."""


class LockedError(EsiError):
    """Another process holds the lock of an output (one writer per store / score output)."""


class PipelineError(EsiError):
    """A Kubeflow pipeline, component or cluster job failed, timed out, or cannot be compiled or submitted."""
