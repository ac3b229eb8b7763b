"""Tags: short labels a tenant puts on its clients and tickets. Free text, compared and stored
casefolded with single spaces, so "VIP" and " vip " are one tag."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from backend.core.schemas import InputModel

MAX_TAGS = 20
TagHolder = Literal["clients", "tickets"]  # what a tag is put on


def normalize_tag(value: str) -> str:
    return " ".join(value.casefold().split())


def normalize_tags(values: list[str]) -> list[str]:
    return sorted({normalize_tag(v) for v in values if normalize_tag(v)})


Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32), AfterValidator(normalize_tag)
]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(normalize_tags)]


class TagsUpdate(InputModel):
    tags: Tags


class TagList(BaseModel):
    items: list[str]
