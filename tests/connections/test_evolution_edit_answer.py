"""How the provider names an agent's edit from Evolution's answer to updateMessage (the shapes a
Baileys protocol message takes in JSON): the name the MESSAGES_EDITED report of that edit gets,
else the edit's own key id, else an error that is not retried (the edit was accepted)."""

import json
from typing import Any

import httpx
import pytest

from backend.connections.providers.base import ProviderError, change_key
from backend.connections.providers.evolution import EvolutionProvider


def _answering(answer: dict[str, Any], seen: list[dict[str, Any]]) -> EvolutionProvider:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, "body": json.loads(request.content)})
        return httpx.Response(201, json=answer)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return EvolutionProvider(http, base_url="http://evolution", api_key="k")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"key": {"id": "OWN"}, "message": {"protocolMessage": {"timestampMs": 1733400000123}}}, "stamp"),
        ({"key": {"id": "OWN"}, "message": {"protocolMessage": {"timestampMs": "1733400000123"}}}, "stamp"),
        (
            {
                "key": {"id": "OWN"},
                "message": {
                    "protocolMessage": {"timestampMs": {"low": 1733400000123 & 0xFFFFFFFF, "high": 1733400000123 >> 32}}
                },
            },
            "stamp",
        ),
        (
            {
                "key": {"id": "OWN"},
                "message": {"editedMessage": {"message": {"protocolMessage": {"timestampMs": 1733400000123}}}},
            },
            "stamp",
        ),
        ({"key": {"id": "OWN"}, "message": {"protocolMessage": {}}}, "OWN"),
    ],
)
async def test_an_edit_is_named_as_its_report_will_name_it(answer: dict[str, Any], expected: str) -> None:
    seen: list[dict[str, Any]] = []
    provider = _answering(answer, seen)
    sent = await provider.edit_text(instance_name="loja", to="5531988887777", provider_message_id="3EB0AA", text="novo")
    want = change_key("edit", "3EB0AA", "1733400000123") if expected == "stamp" else expected
    assert sent.provider_message_id == want
    assert seen == [
        {
            "path": "/chat/updateMessage/loja",
            "body": {
                "number": "5531988887777",
                "text": "novo",
                "key": {"id": "3EB0AA", "remoteJid": "5531988887777@s.whatsapp.net", "fromMe": True},
            },
        }
    ]


async def test_an_answer_that_names_nothing_fails_without_a_retry() -> None:
    provider = _answering({"status": "PENDING"}, [])
    with pytest.raises(ProviderError) as raised:
        await provider.edit_text(instance_name="loja", to="5531988887777", provider_message_id="3EB0AA", text="novo")
    assert raised.value.retryable is False
