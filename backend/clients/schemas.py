import re
from typing import Annotated

from pydantic import AfterValidator

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ReadModel, Timestamp

_PHONE = re.compile(r"^\d{8,15}$")


def normalize_phone(value: str) -> str:
    """Digits only (E.164 without '+'), which is how WhatsApp ids carry numbers."""
    digits = re.sub(r"[\s\-().+]", "", value)
    if not _PHONE.match(digits):
        raise ValueError("phone must have 8 to 15 digits")
    return digits


Phone = Annotated[str, AfterValidator(normalize_phone)]


class ClientCreate(InputModel):
    name: Name
    phone: Phone


class ClientUpdate(InputModel):
    name: Name | None = None


class ClientRead(ReadModel):
    id: str
    reseller_id: str
    name: str
    phone: str
    created_at: Timestamp


ClientPage = Page[ClientRead]
