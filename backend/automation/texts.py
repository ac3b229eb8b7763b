"""The automatic messages' texts: one renderer for the variables, the built-in texts used where
the reseller left one empty, and the department menu's numbered list."""

import re
from collections.abc import Sequence

DEFAULT_MENU_TEXT = "Para agilizar seu atendimento, responda com o número do departamento:"
DEFAULT_SURVEY_TEXT = "Como você avalia este atendimento? Responda com uma nota de 1 (ruim) a 5 (ótimo)."
INVALID_PREFIX = "Não entendi sua resposta."

_VARIABLE = re.compile(r"\{\{\s*(cliente|empresa|protocolo)\s*\}\}")


def render(template: str, *, client: str, company: str, protocol: int | str) -> str:
    """`{{cliente}}` (the client's name), `{{empresa}}` (the company name) and `{{protocolo}}`
    (the ticket number); spaces inside the braces are allowed, anything else is left as typed."""
    values = {"cliente": client, "empresa": company, "protocolo": str(protocol)}
    return _VARIABLE.sub(lambda m: values[m.group(1)], template).strip()


def menu(header: str, names: Sequence[str], *, repeat: bool = False) -> str:
    """ "1 - Suporte", "2 - Financeiro", ... under the header; a repeat says why it came again."""
    lines = [INVALID_PREFIX] if repeat else []
    lines.append(header.strip() or DEFAULT_MENU_TEXT)
    lines.extend(f"{i} - {name}" for i, name in enumerate(names, start=1))
    return "\n".join(lines)


# A client's number answer as people type it: the number alone, spaces around it, and at most
# one trailing mark ("1.", "1)", "1 -", "1:") or the keycap emoji ("1️⃣", with or without its
# variation selector). `\d` is what str.isdecimal() accepts, which int() always reads: "²" or "③"
# (digits for isdigit(), not for int()) are text, never a crash that loses the message. A number
# followed by words ("2 boletos atrasados") is a message, not an answer.
_ANSWER = re.compile(r"\s*((?!0)\d{1,3})(?:\ufe0f?\u20e3|\s*[.)\-:])?\s*")


def digit(body: str | None, *, highest: int) -> int | None:
    """The number from 1 to `highest` a menu answer or a survey rating names (the one reading of
    both), or None when the text is anything else. Never raises, whatever the client typed."""
    found = _ANSWER.fullmatch(body or "")
    if found is None:
        return None
    number = int(found.group(1))
    return number if 1 <= number <= highest else None
