from typing import Annotated

from pydantic import StringConstraints

from backend.core.schemas import InputModel, ReadModel
from backend.users.schemas import UserRead


class LoginRequest(InputModel):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TokenRead(ReadModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserRead
