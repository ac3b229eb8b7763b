"""Base classes shared by every domain's schemas."""

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from backend.core.clock import as_utc
from backend.core.logging import get_logger

log = get_logger("schemas")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
ObjectIdStr = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day_text(value: Any) -> Any:
    # pydantic's `date` also reads a Unix time or a midnight datetime from text; a parameter that
    # names a calendar day refuses those rather than guess which zone's day they meant.
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("a calendar day as YYYY-MM-DD")
    return value


CalendarDay = Annotated[date, BeforeValidator(_iso_day_text)]


def iso_ms(value: datetime) -> str:
    """One fixed width for every timestamp the API sends ("2026-01-02T03:04:05.000Z"), so their
    strings sort as the times do: by default a whole second loses its fraction ("...05Z") and
    sorts after every later time of that second (the inbox orders by these strings)."""
    return as_utc(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    PlainSerializer(iso_ms, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class InputModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class StoredModel(BaseModel):
    """A stored document, read as one (docs/ARCHITECTURE.md, Stored documents): `_id` is `id`, a
    field an older document lacks takes its default. Writes name their fields (`$set`); `stored()`
    is for inserting a new document only, never for writing a read one back."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id")

    @classmethod
    def load(cls, doc: dict[str, Any] | None) -> Self | None:
        return None if doc is None else cls.model_validate(doc)

    @classmethod
    def trusted(cls, doc: Mapping[str, Any]) -> Self:
        """The store's own document built without validation (`model_construct`): for hot scans
        and folds, where validating each document would cost more than reading it."""
        # cast: the pydantic mypy plugin types model_construct as the declaring class, not Self
        return cast(Self, cls.model_construct(**doc))

    def stored(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


M = TypeVar("M", bound=BaseModel)


def readable(
    model: type[M],
    docs: Iterable[Mapping[str, Any]],
    *,
    what: str,
    id_as: str = "id",
    unreadable: list[str] | None = None,
) -> list[M]:
    """The documents that read as `model`, in their order. Each one that does not (an older
    version's shape, an operator's slip) is logged once, with its `_id` (as `id_as`) and why, as
    "<what> unreadable; passed over", left out and its `_id` added to `unreadable` when given: one
    bad document must not stop a read of the others. It stays in the store as it is, for an
    operator to mend; a caller paging through documents pages by what it read, not by what this
    returns, or the bad one would end its walk (core.tenancy.readable_page)."""
    read: list[M] = []
    for doc in docs:
        try:
            read.append(model.model_validate(doc))
        except ValidationError as exc:
            log.error(f"{what} unreadable; passed over", **{id_as: str(doc.get("_id"))}, error=str(exc))
            if unreadable is not None:
                unreadable.append(str(doc.get("_id")))
    return read


class ReadModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls.model_validate({**doc, "id": str(doc["_id"])})

    @classmethod
    def of(cls, stored: StoredModel) -> Self:
        """The API's shape of a stored document: its fields (and properties) by name."""
        return cls.model_validate(stored, from_attributes=True)
