"""All runtime configuration, read once from the environment (see .env.example)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-change-me-please-0123456789abcdef"
EXAMPLE_ADMIN_PASSWORD = "change-me-now"  # the value .env.example ships with
PRODUCTION_LEDGER_FILE = "./var/deploy-ledger.jsonl"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    ENV: Literal["development", "test", "production"] = "development"
    HOST: str = "0.0.0.0"
    PORT: int = 8000
    # Server processes in this container (uvicorn workers): one per core is the usual choice.
    # Each is a full backend (API, websocket hub, webhook processor, outbound worker); they share
    # nothing but the database and Redis, exactly like separate containers.
    WORKERS: int = Field(default=1, ge=1, le=64)
    # Empty means "start a local FerretDB under ./var" (development only; see backend/__main__.py).
    MONGO_URL: str = ""
    MONGO_DB: str = "support_chat"
    MONGO_TIMEOUT_MS: int = 5000

    JWT_SECRET: str = DEV_JWT_SECRET
    JWT_ALGORITHM: str = "HS256"
    ACCESS_TOKEN_MINUTES: int = Field(default=12 * 60, ge=1)

    ADMIN_EMAIL: str = ""
    ADMIN_PASSWORD: str = ""
    ADMIN_NAME: str = "Administrador"

    # Failed logins per email inside LOGIN_WINDOW_SECONDS before further tries get 429.
    LOGIN_MAX_FAILURES: int = 5
    LOGIN_WINDOW_SECONDS: int = 300

    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool = True
    APP_VERSION: str = "dev"
    CORS_ORIGINS: str = ""

    # Deploy ledger (backend/ledger): a copy of every start's counts outside the database, on a
    # persistent volume, so an emptied or swapped database is noticed. Unset: on in production
    # (PRODUCTION_LEDGER_FILE), off in development/test, whose stores are routinely fresh. "" = off.
    LEDGER_FILE: str | None = None
    # Operator override of a refused start: both the baseline id the refusal names and a reason.
    LEDGER_OVERRIDE_BASELINE: str = ""
    LEDGER_OVERRIDE_REASON: str = ""
    # Schema migrations (backend/migrations): how long one instance holds the lock without renewing
    # it, and how long another waits for it before giving up.
    MIGRATION_LEASE_SECONDS: int = Field(default=60, ge=5)
    MIGRATION_WAIT_SECONDS: int = Field(default=300, ge=1)

    # WhatsApp provider: Evolution API v2 (backend/connections). The global API key is sent as the
    # `apikey` header; it never leaves the backend.
    EVOLUTION_BASE_URL: str = ""
    EVOLUTION_API_KEY: str = ""
    EVOLUTION_TIMEOUT_SECONDS: float = Field(default=15.0, gt=0)
    # Public base URL the provider calls back (webhooks): https://helpdesk.example.com
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"
    # Outbound sending worker (backend/outbound): runs inside each backend process when enabled,
    # or alone with `python -m backend.outbound`. Safe with several processes at once.
    OUTBOUND_WORKER_ENABLED: bool = True
    OUTBOUND_POLL_SECONDS: float = Field(default=0.5, gt=0)
    OUTBOUND_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    OUTBOUND_BACKOFF_BASE_SECONDS: float = Field(default=2.0, gt=0)
    OUTBOUND_BACKOFF_MAX_SECONDS: float = Field(default=300.0, gt=0)
    # An attempt not finished within the lease is taken to have died with its process; must
    # exceed EVOLUTION_TIMEOUT_SECONDS.
    OUTBOUND_LEASE_SECONDS: float = Field(default=60.0, gt=0)
    OUTBOUND_CONCURRENCY: int = Field(default=8, ge=1)
    OUTBOUND_SCAN_LIMIT: int = Field(default=200, ge=1)
    # Inbound webhook processor (backend/webhooks/processor.py): the webhook answers once the raw
    # delivery is stored; this processes it. Runs in each backend process when enabled, or alone
    # with `python -m backend.webhooks.processor`. Safe with several processes at once.
    WEBHOOK_PROCESSOR_ENABLED: bool = True
    WEBHOOK_POLL_SECONDS: float = Field(default=1.0, gt=0)
    # Raw events are spread over this many ordered lanes by chat (one chat = one lane, processed in
    # order; lanes in parallel). May be lowered at any time: lanes above it that still hold events
    # are walked until drained (backend/webhooks/processor.py).
    WEBHOOK_LANES: int = Field(default=32, ge=1, le=256)
    WEBHOOK_PROCESSOR_CONCURRENCY: int = Field(default=16, ge=1)
    WEBHOOK_MAX_ATTEMPTS: int = Field(default=8, ge=1)
    WEBHOOK_BACKOFF_BASE_SECONDS: float = Field(default=0.5, gt=0)
    WEBHOOK_BACKOFF_MAX_SECONDS: float = Field(default=60.0, gt=0)
    WEBHOOK_LEASE_SECONDS: float = Field(default=60.0, gt=0)
    WEBHOOK_HOLE_GRACE_SECONDS: float = Field(default=10.0, gt=0)

    # Realtime (/api/v1/ws). REDIS_URL empty = single-process fan-out (no cross-process delivery
    # except through the tail poll); set it whenever more than one backend process serves sockets.
    REDIS_URL: str = ""
    REALTIME_CHANNEL: str = "iaze:realtime"
    REALTIME_HEARTBEAT_SECONDS: float = Field(default=25.0, gt=0)
    REALTIME_RECHECK_SECONDS: float = Field(default=300.0, gt=0)
    REALTIME_QUEUE_SIZE: int = Field(default=1000, ge=1)
    REALTIME_REPLAY_MAX: int = Field(default=5000, ge=0)
    REALTIME_POLL_SECONDS: float = Field(default=2.0, gt=0)

    # Local FerretDB used when MONGO_URL is empty.
    FERRETDB_LISTEN: str = "127.0.0.1:27117"
    FERRETDB_DATA_DIR: str = "./var/ferretdb"

    @property
    def mongo_url(self) -> str:
        return self.MONGO_URL or f"mongodb://{self.FERRETDB_LISTEN}/"

    @property
    def ledger_file(self) -> str:
        if self.LEDGER_FILE is not None:
            return self.LEDGER_FILE
        return PRODUCTION_LEDGER_FILE if self.ENV == "production" else ""

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.CORS_ORIGINS.split(",") if o.strip()]

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if not self.JWT_SECRET and self.ENV != "production":
            self.JWT_SECRET = DEV_JWT_SECRET  # an empty line copied from .env.example
        if self.ENV == "production":
            if self.JWT_SECRET == DEV_JWT_SECRET or len(self.JWT_SECRET) < 32:
                raise ValueError("JWT_SECRET must be set to a random value of 32+ chars in production")
            if not self.MONGO_URL:
                raise ValueError("MONGO_URL is required in production (no local development store)")
            if self.ADMIN_PASSWORD == EXAMPLE_ADMIN_PASSWORD:
                raise ValueError("ADMIN_PASSWORD is the .env.example default; set a real one in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
