"""FastAPI dependencies shared by every router: the database and the settings. The acting user's
dependencies are auth's (backend/auth/deps.py): resolving one reads users and tenants."""

from typing import Annotated

from fastapi import Depends, Header, Request

from backend.core.config import Settings
from backend.core.db import Database


# `async def` although they never await: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hand-off on every request for what is an attribute read.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Db = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]

# A client-made key per write (a UUID, say), kept by the client across its attempts at that write:
# an attempt repeated because its answer never came back stores nothing twice.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,100}$")]
