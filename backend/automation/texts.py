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


def digit(body: str | None, *, highest: int) -> int | None:
    """The answer when it is just one digit from 1 to `highest` (spaces around allowed)."""
    text = (body or "").strip()
    if len(text) == 1 and text.isdigit() and 1 <= int(text) <= highest:
        return int(text)
    return None
