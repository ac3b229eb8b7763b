"""CSV exports: who may export what, the period in the tenant's timezone, the rows, and the bound
on exports running at once.

Decisions (README, Exports):
- Who: the reseller owner exports its tenant; the platform admin exports one reseller it names
  (`reseller_id`). Agents get 403: a file of every client's phone and every conversation is more
  than an agent's inbox shows, and an agent's own figures are on the dashboard.
- What: tickets *opened* in the period; messages *written* in it. Internal notes are left out of
  the messages file: they are staff remarks, and an export is often handed to someone outside.
- Which: the dashboard's filters (reports.schemas.ReportFilters), the same as its figures: a ticket
  by its department, holder and connection (the file's own columns, as they are now); a message
  by the department, holder and connection stamped on it when it was written (messages.append),
  the dims the reports count it under. The file's name lists the filters it covers (`filename`).
- The longest period is the reports' (reports.service.MAX_DAYS): the dashboard never shows a
  period whose export would be refused.
- Cells a spreadsheet would run as a formula (starting with = + - @, tab or carriage return) are
  prefixed with an apostrophe.
- Never slowing the API for others: at most EXPORT_MAX_CONCURRENT exports run per process (more
  are refused with 429 and Retry-After before any byte is sent); each reads one cursor in batches
  of EXPORT_BATCH_ROWS and hands the event loop back between batches, so other requests are
  served between two batches; the rows are sent as they are made, so memory holds one batch.
"""

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from backend.core.clock import as_utc, day_end, day_start
from backend.core.db import Database
from backend.core.errors import Forbidden, TooManyRequests, Unprocessable
from backend.core.tenancy import Actor, TenantScope
from backend.exports import repository
from backend.exports.models import TicketRow
from backend.messages.models import Message
from backend.reports import service as reports
from backend.reports.schemas import ReportFilters
from backend.resellers import service as resellers

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TICKET_HEADER = [
    "numero",
    "cliente",
    "telefone",
    "departamento",
    "agente",
    "status",
    "aberto_em",
    "assumido_em",
    "finalizado_em",
    "primeira_resposta_segundos",
    "resolucao_segundos",
    "avaliacao",
]
MESSAGE_HEADER = [
    "data_hora",
    "ticket",
    "cliente",
    "telefone",
    "direcao",
    "remetente_tipo",
    "remetente",
    "tipo",
    "texto",
    "status",
]
DIRECTIONS = {"in": "recebida", "out": "enviada"}
TICKET_CACHE = 1000  # tickets remembered while writing messages (most batches share a few)


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC for the days `first`..`last` (inclusive) in `tz`."""

    start: datetime
    end: datetime
    tz: ZoneInfo


class ExportGate:
    """The per-process bound on exports running at once. `admit` refuses (429) when every slot is
    taken; the export takes its slot when its body starts and gives it back when the body ends,
    however it ends (finished, client gone, error), so a response that never started holds none.
    Two requests admitted together may find one slot: the second then waits for it."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running = 0
        self._sem = asyncio.Semaphore(slots)

    def admit(self) -> None:
        if self.running >= self.slots:
            raise TooManyRequests("too many exports running; try again in a minute", retry_after=30)

    async def run(self, body: AsyncIterator[str]) -> AsyncIterator[bytes]:
        async with self._sem:
            self.running += 1
            try:
                async for chunk in body:
                    yield chunk.encode("utf-8")
                    await asyncio.sleep(0)  # let other requests in between two batches
            finally:
                self.running -= 1


def cell(value: Any) -> str:
    """A spreadsheet runs a cell starting with = + - @ (or a tab, a CR) as a formula: quote it as text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def scope_for(db: Database, actor: Actor, *, reseller_id: str | None) -> tuple[TenantScope, ZoneInfo]:
    """The tenant an export reads and its timezone. 404 for an unknown reseller (the admin's)."""
    if actor.role == "agent":
        raise Forbidden("exports are for the reseller owner")
    if actor.is_admin:
        if reseller_id is None:
            raise Unprocessable("reseller_id is required for the platform admin")
        tenant = reseller_id
        await resellers.get_or_404(db, reseller_id=tenant)
    else:
        assert actor.reseller_id
        tenant = actor.reseller_id
    return TenantScope(tenant), resellers.zone(await resellers.timezone_of(db, tenant))


def period(first: date, last: date, tz: ZoneInfo) -> Period:
    """The days `first`..`last`, both inclusive, as local midnights in the tenant's timezone
    (a period the reports may cover, or 422)."""
    reports.check_period(first, last)
    return Period(start=day_start(first, tz), end=day_end(last, tz), tz=tz)


# How a filter reads in a file's name: the words the page shows, in the catalogue's Portuguese.
FILTER_NAMES = (("department_id", "departamento"), ("agent_id", "agente"), ("connection_id", "conexao"))
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")


def filename(kind: str, when: tuple[date, date], filters: ReportFilters) -> str:
    """`<kind>_<from>_<to>[_departamento-<id>][_agente-<id>][_conexao-<id>].csv`: which days and
    which filters the file covers (a connection id is free text: anything but [A-Za-z0-9_-] is `_`,
    so the name is safe in a Content-Disposition header and on any disk)."""
    parts = [kind, when[0].isoformat(), when[1].isoformat()]
    for field, word in FILTER_NAMES:
        value = getattr(filters, field)
        if value is not None:
            parts.append(f"{word}-{UNSAFE_IN_NAME.sub('_', value)}")
    return "_".join(parts) + ".csv"


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    return as_utc(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _seconds(later: datetime | None, earlier: datetime | None) -> str:
    if later is None or earlier is None:
        return ""
    return str(max(0, round((as_utc(later) - as_utc(earlier)).total_seconds())))


def first_response(marks: list[Message]) -> tuple[datetime | None, datetime | None]:
    """(the client's first message, the first agent reply after it) in one ticket's thread."""
    asked = min((as_utc(m.created_at) for m in marks if m.sender_type == "client"), default=None)
    if asked is None:
        return None, None
    replies = [m for m in marks if m.sender_type == "agent" and m.direction == "out"]
    return asked, min((at for m in replies if (at := as_utc(m.created_at)) >= asked), default=None)


async def _ticket_rows(
    db: Database, scope: TenantScope, page: list[TicketRow], tz: ZoneInfo, departments: dict[str, str]
) -> list[list[str]]:
    ids = [t.id for t in page]
    assumed: dict[str, datetime] = {}
    for event in await repository.assume_events(db, scope, ids):
        at = as_utc(event.at)
        assumed[event.ticket_id] = min(at, assumed.get(event.ticket_id, at))
    threads: dict[str, list[Message]] = {}
    for mark in await repository.thread_marks(db, scope, ids):
        threads.setdefault(mark.ticket_id, []).append(mark)
    rows = []
    for t in page:
        asked, replied = first_response(threads.get(t.id, []))
        rows.append(
            [
                cell(t.number),
                cell(t.client_name),
                cell(t.client_phone),
                cell(departments.get(str(t.department_id), "")),
                cell(t.agent_name),
                cell(t.status),
                _local(t.created_at, tz),
                _local(assumed.get(t.id), tz),
                _local(t.finalized_at, tz),
                _seconds(replied, asked),
                _seconds(t.finalized_at, t.created_at),
                cell(t.rating),
            ]
        )
    return rows


async def tickets_csv(
    db: Database, scope: TenantScope, when: Period, *, filters: ReportFilters, batch: int
) -> AsyncIterator[str]:
    """Every ticket opened in the period inside the filters, oldest first: the header (with the
    BOM), then one chunk per batch, each made and sent before the next batch is read."""
    yield BOM + csv_lines([TICKET_HEADER])
    departments = await repository.department_names(db, scope)
    pages = repository.tickets_opened(db, scope, start=when.start, end=when.end, filters=filters, batch=batch)
    async for page in pages:
        yield csv_lines(await _ticket_rows(db, scope, page, when.tz, departments))


async def messages_csv(
    db: Database, scope: TenantScope, when: Period, *, filters: ReportFilters, batch: int
) -> AsyncIterator[str]:
    """Every conversation message written in the period inside the filters, oldest first, with its
    ticket's number and client (tickets read by `_id`, the last TICKET_CACHE kept)."""
    yield BOM + csv_lines([MESSAGE_HEADER])
    tickets: dict[str, TicketRow] = {}
    nobody = TicketRow(id="")
    pages = repository.messages_written(db, scope, start=when.start, end=when.end, filters=filters, batch=batch)
    async for page in pages:
        missing = list(dict.fromkeys(m.ticket_id for m in page if m.ticket_id not in tickets))
        for found in await repository.tickets_by_id(db, scope, missing):
            tickets[found.id] = found
        rows = []
        for m in page:
            t = tickets.get(m.ticket_id, nobody)
            body = m.body or (m.media.name if m.media is not None else "")  # a file without caption: its name
            rows.append(
                [
                    _local(m.created_at, when.tz),
                    cell(t.number),
                    cell(t.client_name),
                    cell(t.client_phone),
                    DIRECTIONS.get(str(m.direction), cell(m.direction)),
                    cell(m.sender_type),
                    cell(m.sender_name),
                    cell(m.type),
                    cell(body),
                    cell(m.status),
                ]
            )
        while len(tickets) > TICKET_CACHE:
            del tickets[next(iter(tickets))]
        yield csv_lines(rows)
