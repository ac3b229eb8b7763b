"""All runtime configuration, read once from the environment (see .env.example)."""

import contextlib
import ipaddress
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# In the repository, so anyone can sign tokens with it: accepted only with ENV=test, or in
# development against the checkout's own local store (no MONGO_URL), where no one else's data is.
DEV_JWT_SECRET = "dev-only-change-me-please-0123456789abcdef"
EXAMPLE_ADMIN_PASSWORD = "change-me-now"  # the value .env.example ships with
DEFAULT_LEDGER_FILE = "./var/deploy-ledger.jsonl"
STORE_MARKER = "iaze-store.json"  # in the local store's data directory: its id and address
LEGACY_FERRETDB_LISTEN = "127.0.0.1:27117"  # the fixed address before it was chosen per data directory
SETUP_CACHE_SECONDS_DEFAULT = 5.0  # also a runtime's until its gate sets the process's (core/runtime.py)


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
    # The longest wait for one command's reply. Without it a connection whose peer stopped
    # answering (a hung store, a failover that left the socket half-open) holds the caller
    # forever: a webhook lane or the outbox stalls with messages behind it. A timed-out command
    # fails like any store error, so its delivery or send is retried on a fresh connection.
    # Past a lease (WEBHOOK_LEASE_SECONDS) another process may take the work over anyway; 0: no limit.
    MONGO_SOCKET_TIMEOUT_MS: int = Field(default=60_000, ge=0)

    # Empty in development: a random secret generated once per checkout and kept in
    # <FERRETDB_DATA_DIR>/../jwt-secret (./var/jwt-secret), so no two checkouts share one.
    JWT_SECRET: str = ""
    JWT_ALGORITHM: str = "HS256"
    ACCESS_TOKEN_MINUTES: float = Field(default=12 * 60, gt=0)

    ADMIN_EMAIL: str = ""
    ADMIN_PASSWORD: str = ""
    ADMIN_NAME: str = "Administrador"

    # --- Login throttle, client addresses, token revocation across processes (backend/auth) ---
    # Failed logins per account AND client address inside one window of LOGIN_WINDOW_SECONDS
    # before further tries get 429 (a success forgives the earlier ones). Per pair, so whoever
    # guesses from elsewhere cannot lock the real user out.
    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1)
    LOGIN_WINDOW_SECONDS: int = Field(default=300, ge=1)
    # Failed logins per client address across all accounts inside one window (password spraying).
    LOGIN_MAX_FAILURES_PER_ADDRESS: int = Field(default=20, ge=1)
    # Comma-separated addresses or networks (CIDR) of the reverse proxies in front of the backend
    # (nginx). Only a request whose peer is one of them has its client address taken from
    # X-Forwarded-For (or X-Real-IP); from anyone else those headers are ignored.
    TRUSTED_PROXIES: str = ""
    # How many trusted proxies stand in front (nginx alone: 1). Then the client is the address the
    # outermost of them appended to X-Forwarded-For, whatever it is: a client on the office LAN or
    # a VPN has a private address inside TRUSTED_PROXIES too, which the default (0) would skip as
    # another proxy, believing whatever the client wrote before it. 0: skip trusted addresses from
    # the right (for chains whose length varies).
    TRUSTED_PROXY_HOPS: int = Field(default=0, ge=0, le=10)

    @model_validator(mode="after")
    def _check_auth_settings(self) -> "Settings":
        for proxy in self.TRUSTED_PROXIES.split(","):
            if proxy.strip():
                try:
                    ipaddress.ip_network(proxy.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"TRUSTED_PROXIES: {proxy.strip()!r} is not an address or network") from exc
        # A revoked token (deactivation, password change) closes open sockets on other processes
        # only through Redis; without it they would learn at their next periodic re-check, minutes
        # later. Several workers need REDIS_URL.
        if self.WORKERS > 1 and not self.REDIS_URL:
            raise ValueError(
                f"WORKERS={self.WORKERS} needs REDIS_URL: without it, revoking a user's access (deactivation,"
                " password change) would not reach open websockets served by the other worker processes"
            )
        return self

    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool = True
    APP_VERSION: str = "dev"
    CORS_ORIGINS: str = ""

    # Request bodies (backend/core/middleware.BodyLimit): larger ones get 413, refused from their
    # Content-Length or, for chunked bodies, as soon as the count passes the limit. A webhook
    # delivery up to its limit is kept whole (in parts past one document's size: a history sync
    # after a pairing can be large); past it the provider gets 413 and does not send it again.
    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)
    WEBHOOK_MAX_BODY_BYTES: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Connections (uvicorn, backend/core/server.py): a request's headers must arrive within
    # HTTP_HEADER_TIMEOUT_SECONDS of its first byte (or of the connection); its body may not fall
    # silent for HTTP_BODY_TIMEOUT_SECONDS (nginx's client_body_timeout for uploads is the same)
    # and, past that long after the headers, must average HTTP_BODY_MIN_BYTES_PER_SECOND; an idle
    # keep-alive connection is closed after HTTP_KEEP_ALIVE_SECONDS. HTTP_MAX_HEADER_BYTES bounds
    # request line plus headers (431 past it).
    HTTP_HEADER_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    HTTP_BODY_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0)
    HTTP_BODY_MIN_BYTES_PER_SECOND: int = Field(default=16 * 1024, ge=0)
    HTTP_KEEP_ALIVE_SECONDS: int = Field(default=5, ge=1)
    HTTP_MAX_HEADER_BYTES: int = Field(default=16 * 1024, ge=1024)

    # Deploy ledger (backend/ledger): a copy of every start's counts and of the database's
    # identity outside the database, on a persistent volume, so an emptied or swapped database is
    # noticed. Unset: ./var/deploy-ledger.jsonl in every mode. "" = off (test harnesses).
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
    # The three workers below (outbound sending, webhook processing, media fetch) each run inside
    # every backend process when enabled, or alone with `python -m backend.<its package>`; each is
    # safe with several processes at once.
    # Outbound sending worker (backend/outbound); its tuning is its attempts.Policy (`policy_of`).
    # How long the outbound worker and the media fetch try again an item whose stored documents do
    # not read (its message, its attempts, a reply before it in its chat) before giving it up
    # (failed, so that it holds nothing behind it): long enough for a rolling deploy, whose newer
    # processes may read what an older one cannot (core/attempts.py, `QueueWalk.overdue`).
    UNREADABLE_GIVE_UP_SECONDS: float = Field(default=600.0, ge=0)
    OUTBOUND_WORKER_ENABLED: bool = True
    OUTBOUND_POLL_SECONDS: float = Field(default=0.5, gt=0)
    OUTBOUND_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    OUTBOUND_BACKOFF_BASE_SECONDS: float = Field(default=2.0, gt=0)
    OUTBOUND_BACKOFF_MAX_SECONDS: float = Field(default=300.0, gt=0)
    # An attempt not finished within the lease is taken to have died with its process; must
    # exceed EVOLUTION_TIMEOUT_SECONDS.
    OUTBOUND_LEASE_SECONDS: float = Field(default=60.0, gt=0)
    # How long after the worker passed a queued reply as never stored (older than the lease) it
    # still looks for the reply's insert landing late (a stalled store, a timed-out insert that
    # ran after all): one `_id` read per such reply per lease while it looks.
    OUTBOUND_LATE_STORE_SECONDS: float = Field(default=3600.0, gt=0)
    OUTBOUND_CONCURRENCY: int = Field(default=8, ge=1)
    # Sends per second to one WhatsApp connection from one worker, after a burst of up to
    # OUTBOUND_BURST_PER_CONNECTION (0: unpaced).
    OUTBOUND_RATE_PER_CONNECTION: float = Field(default=5.0, ge=0)
    OUTBOUND_BURST_PER_CONNECTION: int = Field(default=10, ge=1)
    OUTBOUND_SCAN_LIMIT: int = Field(default=200, ge=1)
    # How long a process answers reads of a tenant's config and of a WhatsApp connection from its
    # own copy (backend/core/single_flight.py); 0 reads the store every time. A change is seen at
    # once by the process that made it, and by the others within this many seconds: what that
    # allows is written where each copy is read (resellers.service.config_internal,
    # connections.repository.get_cached_internal).
    SETUP_CACHE_SECONDS: float = Field(default=SETUP_CACHE_SECONDS_DEFAULT, ge=0, le=60)
    # Inbound webhook processor (backend/webhooks/processor.py): the webhook answers once the raw
    # delivery is stored; this processes it.
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
    # How often each processor looks for deliveries waiting to be run again: an edit processed
    # before the message it edits (parked instead of holding its lane), or one whose attempts all
    # failed on errors that may pass (run again after 5 minutes, doubling to 2 hours, for 2 days).
    WEBHOOK_WAITING_CHECK_SECONDS: float = Field(default=5.0, gt=0)
    # The connection watch (backend/webhooks/watch.py): how often each process asks the provider
    # for every connection's state and webhook, sets a drifted webhook again and catches up
    # what the provider kept meanwhile; how far back that catch-up asks when this process never
    # saw the webhook right before (it started since).
    CONNECTION_WATCH_ENABLED: bool = True
    CONNECTION_WATCH_SECONDS: float = Field(default=300.0, gt=0)
    CONNECTION_WATCH_CATCH_UP_HOURS: float = Field(default=48.0, gt=0)
    # Inbound media fetch (backend/media/worker.py): a media message is stored at once, its bytes
    # are fetched after it (from the webhook's inline base64, else the provider), retried with
    # backoff.
    MEDIA_FETCH_ENABLED: bool = True
    MEDIA_FETCH_POLL_SECONDS: float = Field(default=1.0, gt=0)
    MEDIA_FETCH_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    MEDIA_FETCH_BACKOFF_BASE_SECONDS: float = Field(default=2.0, gt=0)
    MEDIA_FETCH_BACKOFF_MAX_SECONDS: float = Field(default=300.0, gt=0)
    # A fetch not finished within the lease is taken to have died with its process; must exceed
    # EVOLUTION_TIMEOUT_SECONDS plus the time to store the largest file.
    MEDIA_FETCH_LEASE_SECONDS: float = Field(default=120.0, gt=0)
    MEDIA_FETCH_CONCURRENCY: int = Field(default=4, ge=1)
    MEDIA_FETCH_SCAN_LIMIT: int = Field(default=200, ge=1)
    # Ticket projection sweep (backend/tickets/sweep.py): the backstop that makes lists and counts
    # converge to ticket_events and messages when a writer died between its write and the ticket.
    TICKET_SWEEP_ENABLED: bool = True
    TICKET_SWEEP_SECONDS: float = Field(default=5.0, gt=0)
    # Each sweep re-reads what was written since the previous one started minus this margin
    # (longer than any write takes to land); the first sweep of a process looks back STARTUP.
    TICKET_SWEEP_LOOKBACK_SECONDS: float = Field(default=60.0, gt=0)
    TICKET_SWEEP_STARTUP_LOOKBACK_SECONDS: float = Field(default=900.0, gt=0)
    # Scheduled messages (backend/scheduled): every process sends what is due, this often; a
    # schedule goes out up to this late. Safe with several processes (one outcome key each).
    SCHEDULED_MESSAGES_ENABLED: bool = True
    SCHEDULED_MESSAGES_POLL_SECONDS: float = Field(default=10.0, gt=0)

    # CSV exports (backend/exports): exports running at once per process (more get 429), and rows
    # read and sent per batch (the memory one export holds). Their longest period is the reports'
    # (reports.service.MAX_DAYS): the page exports what it shows.
    EXPORT_MAX_CONCURRENT: int = Field(default=2, ge=1)
    EXPORT_BATCH_ROWS: int = Field(default=500, ge=1, le=10_000)

    # /metrics: the gauges read from the database (tickets by state, outbox backlog, webhook lane
    # lag; backend/monitoring) are refreshed on scrape at most this often, looking at most
    # METRICS_LOOK_AHEAD entries past each queue's cursor for its oldest waiting one.
    METRICS_REFRESH_SECONDS: float = Field(default=10.0, ge=0)
    METRICS_LOOK_AHEAD: int = Field(default=100, ge=1)

    # Realtime (/api/v1/ws). REDIS_URL empty = single-process fan-out (no cross-process delivery
    # except through the tail poll); set it whenever more than one backend process serves sockets.
    REDIS_URL: str = ""
    REALTIME_CHANNEL: str = "iaze:realtime"
    REALTIME_HEARTBEAT_SECONDS: float = Field(default=25.0, gt=0)
    REALTIME_RECHECK_SECONDS: float = Field(default=300.0, gt=0)
    REALTIME_QUEUE_SIZE: int = Field(default=1000, ge=1)
    REALTIME_REPLAY_MAX: int = Field(default=5000, ge=0)
    REALTIME_POLL_SECONDS: float = Field(default=2.0, gt=0)
    REALTIME_BUS_PING_SECONDS: float = Field(default=5.0, gt=0)

    # Local FerretDB used when MONGO_URL is empty (backend/devtools/ferretdb.py). Empty listen
    # address: a free loopback port chosen per data directory and recorded in it, so checkouts
    # run side by side.
    FERRETDB_LISTEN: str = ""
    FERRETDB_DATA_DIR: str = "./var/ferretdb"

    @property
    def mongo_url(self) -> str:
        if self.MONGO_URL:
            return self.MONGO_URL
        return f"mongodb://{self.FERRETDB_LISTEN or recorded_listen(Path(self.FERRETDB_DATA_DIR))}/"

    @property
    def ledger_file(self) -> str:
        return DEFAULT_LEDGER_FILE if self.LEDGER_FILE is None else self.LEDGER_FILE

    @property
    def jwt_secret_file(self) -> Path:
        return Path(self.FERRETDB_DATA_DIR).parent / "jwt-secret"

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.CORS_ORIGINS.split(",") if o.strip()]

    @model_validator(mode="after")
    def _check_outbound_settings(self) -> "Settings":
        # A window shorter than the lease would end a passed reply's looks at the first one.
        if self.OUTBOUND_LATE_STORE_SECONDS < self.OUTBOUND_LEASE_SECONDS:
            raise ValueError(
                f"OUTBOUND_LATE_STORE_SECONDS ({self.OUTBOUND_LATE_STORE_SECONDS}) must be at least"
                f" OUTBOUND_LEASE_SECONDS ({self.OUTBOUND_LEASE_SECONDS})"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.ENV == "test" and not self.JWT_SECRET:
            self.JWT_SECRET = DEV_JWT_SECRET
        if self.ENV == "development":
            if self.JWT_SECRET == DEV_JWT_SECRET and self.MONGO_URL:
                raise ValueError(
                    "JWT_SECRET is the repository's development constant, which anyone can sign tokens with, "
                    "and MONGO_URL points at a real database; leave JWT_SECRET empty (a random secret is kept "
                    "in ./var) or set your own (openssl rand -hex 32)"
                )
            if not self.JWT_SECRET:
                try:
                    self.JWT_SECRET = local_jwt_secret(self.jwt_secret_file)
                except OSError:
                    # A read-only checkout (an operator's script run elsewhere): still random, only
                    # not kept, so tokens last as long as this process.
                    self.JWT_SECRET = secrets.token_hex(32)
        if self.ENV == "production":
            if self.JWT_SECRET == DEV_JWT_SECRET or len(self.JWT_SECRET) < 32:
                raise ValueError("JWT_SECRET must be set to a random value of 32+ chars in production")
            if not self.MONGO_URL:
                raise ValueError("MONGO_URL is required in production (no local development store)")
            if self.ADMIN_PASSWORD == EXAMPLE_ADMIN_PASSWORD:
                raise ValueError("ADMIN_PASSWORD is the .env.example default; set a real one in production")
        return self


def write_whole_file(path: Path, data: bytes, *, exclusive: bool, mode: int = 0o666) -> None:
    """Written to a temporary file, then linked (`exclusive`: FileExistsError when `path` exists)
    or renamed into place, so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path) if exclusive else os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def local_jwt_secret(path: Path) -> str:
    """The checkout's own random signing key, created on first use. Linked into place whole, so
    processes starting at once (uvicorn workers) all end up reading the one that won."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process created it first; use theirs
        write_whole_file(path, secrets.token_hex(32).encode(), exclusive=True, mode=0o600)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds a JWT secret shorter than 32 characters; delete it to get a new one")
    return secret


def recorded_listen(data_dir: Path) -> str:
    """Where the data directory's local store listens, as it recorded (backend/devtools/ferretdb.py
    writes it); scripts run beside `python -m backend` without MONGO_URL find it there."""
    try:
        marker = json.loads((data_dir / STORE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return LEGACY_FERRETDB_LISTEN
    listen = marker.get("listen") if isinstance(marker, dict) else None
    return str(listen) if listen else LEGACY_FERRETDB_LISTEN


@lru_cache
def get_settings() -> Settings:
    return Settings()
