import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, EmailStr, StringConstraints, field_validator

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ReadModel, Timestamp
from backend.tags.schemas import Tags

_PHONE = re.compile(r"^\d{8,15}$")


def normalize_phone(value: str) -> str:
    """Digits only (E.164 without '+'), which is how WhatsApp ids carry numbers."""
    digits = re.sub(r"[\s\-().+]", "", value)
    if not _PHONE.match(digits):
        raise ValueError("phone must have 8 to 15 digits")
    return digits


Phone = Annotated[str, AfterValidator(normalize_phone)]
Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class ClientCreate(InputModel):
    """One client per phone per tenant. Numbers WhatsApp treats as one account are one phone: a
    Brazilian mobile with or without its ninth digit ("55 31 9 8xxx-xxxx" and "55 31 8xxx-xxxx"),
    a Mexican one with or without "1" after 52, an Argentine one with or without "9" after 54. A
    second client for either form is refused (409 naming the client); the phone is kept as typed."""

    name: Name
    phone: Phone
    email: EmailStr | None = None
    notes: Notes = ""
    tags: Tags = []


class ClientUpdate(InputModel):
    """The phone is the client's key (WhatsApp delivers by it) and does not change, except once
    for a client that has none (a WhatsApp chat that hid its number): then it is given, and
    refused with 409 naming the client that has it already. `active`:
    "removing" a client deactivates it (the reseller's owner only): it is kept with its history,
    listed only when asked for, and no conversation is started with it; a message it sends is
    still received and filed like any other, since nothing a client sends is ever dropped."""

    name: Name | None = None
    phone: Phone | None = None
    email: EmailStr | None = None
    notes: Notes | None = None
    tags: Tags | None = None
    active: bool | None = None


class ClientRead(ReadModel):
    id: str
    reseller_id: str
    name: str
    # "" for a client WhatsApp named only by its LID (its privacy id): reached all the same.
    phone: str = ""
    email: str | None = None
    notes: str = ""
    tags: list[str] = []
    active: bool = True
    merged_into: str | None = None  # merged into that client: its chats go there now
    same_person_as: str | None = None  # WhatsApp named this client's chat with that client's number
    created_at: Timestamp

    @field_validator("phone", mode="before")
    @classmethod
    def _no_number(cls, value: object) -> object:
        return "" if value is None else value


ClientPage = Page[ClientRead]

# CSV import: the whole file in one JSON body (within the API's body limit), checked as a whole
# before anything is written.
MAX_IMPORT_LINES = 5000
CsvText = Annotated[str, StringConstraints(min_length=1, max_length=1_000_000)]


class ClientImport(InputModel):
    csv: CsvText
    dry_run: bool = True


class ImportLineError(BaseModel):
    line: int
    field: str
    message: str


class ImportRow(BaseModel):
    line: int
    name: str
    phone: str
    email: str | None = None
    notes: str = ""
    tags: list[str] = []
    exists: bool


class ClientImportResult(BaseModel):
    dry_run: bool
    rows: list[ImportRow]
    errors: list[ImportLineError]
    created: int = 0
    updated: int = 0


class ClientMerge(InputModel):
    into_client_id: str  # the client kept: the merged one's chats and history join it
