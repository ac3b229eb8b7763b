from typing import Annotated, Literal

from pydantic import EmailStr, StringConstraints

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ObjectIdStr, Password, ReadModel, Timestamp


class UserCreate(InputModel):
    name: Name
    email: EmailStr
    password: Password
    role: Literal["agent"] = "agent"
    department_ids: list[ObjectIdStr] = []


class UserUpdate(InputModel):
    name: Name | None = None
    password: Password | None = None
    department_ids: list[ObjectIdStr] | None = None
    active: bool | None = None


class UserRead(ReadModel):
    id: str
    name: str
    email: str | None = None
    role: str
    reseller_id: str | None = None
    department_ids: list[str] = []
    active: bool
    created_at: Timestamp


UserPage = Page[UserRead]


class ProfileUpdate(InputModel):
    """What every user changes about itself (the password has its own route: it needs the current one)."""

    name: Name


class PasswordChange(InputModel):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    new_password: Password
