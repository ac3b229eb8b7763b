"""Base classes shared by every domain's schemas."""

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, StringConstraints

from backend.core.ids import is_valid_id

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
ObjectIdStr = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]


class InputModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls.model_validate({**doc, "id": str(doc["_id"])})


def valid_id_or_none(value: str) -> str | None:
    return value if is_valid_id(value) else None
