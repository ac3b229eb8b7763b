"""create_app(): wiring only — database client, start-up checks, routers, error rendering."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import gates
from backend.admin.routes import router as admin_router
from backend.auth.routes import router as auth_router
from backend.clients.routes import router as clients_router
from backend.connections.routes import router as connections_router
from backend.core import startup, tuning
from backend.core.config import Settings, get_settings
from backend.core.db import Database, durable_database, make_client
from backend.core.errors import STORE_SILENT, AppError, TooManyRequests
from backend.core.logging import configure_logging, get_logger
from backend.core.middleware import BodyLimit, EmptyQueryIsAbsent, ReadinessGate, RequestContextMiddleware
from backend.core.runtime import open_runtime
from backend.departments.routes import router as departments_router
from backend.exports.routes import router as exports_router
from backend.history.routes import router as history_router
from backend.media import worker as media_fetch_loop
from backend.media.routes import router as media_router
from backend.messages import uploads
from backend.messages.routes import router as notes_router
from backend.monitoring import service as monitoring
from backend.outbound import worker as outbound_worker_loop
from backend.quick_replies.routes import router as quick_replies_router
from backend.realtime import lifecycle as realtime
from backend.realtime.routes import router as realtime_router
from backend.reports.routes import router as reports_router
from backend.resellers.routes import router as resellers_router
from backend.scheduled import service as scheduled_loop
from backend.scheduled.routes import router as scheduled_router
from backend.tags.routes import router as tags_router
from backend.tickets import sweep as ticket_sweep_loop
from backend.tickets.routes import router as tickets_router
from backend.users.routes import router as users_router
from backend.users.service import ensure_first_admin
from backend.webhooks import processor as webhook_processor_loop
from backend.webhooks import watch as connection_watch_loop
from backend.webhooks.routes import router as webhooks_router

log = get_logger("app")


class Ready(BaseModel):
    status: Literal["ready"]
    version: str


class NotReady(BaseModel):
    status: Literal["not ready"]
    errors: list[str]


async def _first_admin(db: Database, settings: Settings) -> None:
    if await ensure_first_admin(db, settings):
        log.info("first admin created", email=settings.ADMIN_EMAIL)


API_STEPS: tuple[startup.Step, ...] = (("first-admin", _first_admin),)  # after the gate's


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ConnectionFailure)
    async def _store_silent(request: Request, exc: ConnectionFailure) -> JSONResponse:
        # The store did not answer (a timeout, a failover, a dropped connection): what the request
        # wrote may or may not be stored, and the same request may be tried again — a 503 that
        # says so, as the readiness gate's, rather than an unexplained 500.
        log.warning("database did not answer", path=request.url.path, error=str(exc))
        return JSONResponse({"detail": STORE_SILENT}, status_code=503, headers={"Retry-After": "1"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start-up, in order; shut down in reverse as the stack unwinds.
        async with AsyncExitStack() as stack:
            # 1. This process's database client and its runtime (every process-local queue,
            #    hint and sink: backend/core/runtime.py), closed last.
            client = make_client(settings)
            stack.push_async_callback(client.close)
            stack.push_async_callback(open_runtime(client).close)
            app.state.mongo = client
            db = app.state.db = durable_database(client, settings.MONGO_DB)
            # 2. The start-up gate every writing process shares (backend/gates.py), then ours.
            app.state.startup = await gates.open_gate(db, settings, then=API_STEPS)
            log.info("started", version=settings.APP_VERSION, ready=app.state.startup.ready, db=settings.MONGO_DB)
            # 3. Realtime (hub, Redis bus, feed sinks, websockets closed on SIGTERM) before anything
            #    publishes in the background.
            app.state.realtime = await stack.enter_async_context(realtime.running(db, settings))
            # 4. The background loops, only once the gate passed: the outbound sending worker
            #    (OUTBOUND_WORKER_ENABLED), the inbound webhook processor (WEBHOOK_PROCESSOR_ENABLED;
            #    the webhook only stores), the repair of projections a dead writer left behind
            #    (TICKET_SWEEP_ENABLED), the inbound media fetch (MEDIA_FETCH_ENABLED), the check of
            #    every connection's state and webhook at the provider (CONNECTION_WATCH_ENABLED), the
            #    sending of scheduled messages (SCHEDULED_MESSAGES_ENABLED).
            loops = (
                outbound_worker_loop,
                webhook_processor_loop,
                ticket_sweep_loop,
                media_fetch_loop,
                connection_watch_loop,
                scheduled_loop,
            )
            for loop in loops:
                stack.push_async_callback(loop.background(db, settings, enabled=app.state.startup.ready).close)
            # 5. The garbage collector, once start-up allocated what lives as long as the process.
            tuning.tune_gc()
            yield
        log.info("stopped")

    app = FastAPI(
        title="IAZE helpdesk API",
        version=settings.APP_VERSION,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.operation_id or route.name,
    )
    app.state.settings = settings
    app.state.startup = startup.StartupState()
    _install_error_handlers(app)
    # Added innermost first: the request id wraps everything, including the not-ready 503.
    app.add_middleware(ReadinessGate)
    app.add_middleware(EmptyQueryIsAbsent)
    app.add_middleware(
        BodyLimit,
        default=settings.MAX_BODY_BYTES,
        limits={"/api/v1/webhooks/": settings.WEBHOOK_MAX_BODY_BYTES},
        uploads={uploads.UPLOAD_PATH: (uploads.MAX_UPLOAD_BYTES, uploads.FORM_TOO_LARGE)},
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    app.add_middleware(RequestContextMiddleware)

    @app.get("/health", tags=["health"], operation_id="health-live")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": settings.APP_VERSION}

    @app.get(
        "/health/ready",
        tags=["health"],
        operation_id="health-ready",
        responses={
            200: {"model": Ready},
            503: {"model": NotReady, "description": "start-up checks or database failed"},
        },
    )
    async def ready(request: Request) -> JSONResponse:
        state: startup.StartupState = request.app.state.startup
        if not state.ready:
            return JSONResponse({"status": "not ready", "errors": state.errors}, status_code=503)
        try:
            await request.app.state.db.command("ping")
        except Exception as exc:
            return JSONResponse({"status": "not ready", "errors": [f"database: {exc}"]}, status_code=503)
        return JSONResponse({"status": "ready", "version": settings.APP_VERSION})

    app.state.metrics_refresher = monitoring.Refresher(settings)

    @app.get("/metrics", tags=["health"], operation_id="health-metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if request.app.state.startup.ready:  # the gauges read from the database (README, Metrics)
            await request.app.state.metrics_refresher.refresh(request.app.state.db)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    api = APIRouter(prefix="/api/v1")
    for router in (
        auth_router,
        resellers_router,
        departments_router,
        users_router,
        clients_router,
        quick_replies_router,
        tags_router,
        tickets_router,
        scheduled_router,
        reports_router,
        notes_router,
        media_router,
        history_router,
        connections_router,
        webhooks_router,
        realtime_router,
        exports_router,
        admin_router,
    ):
        api.include_router(router)
    app.include_router(api)
    return app
