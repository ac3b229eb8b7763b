"""What an uploaded file is sent as comes from its bytes: the declared type only names a document,
and never an inline type the bytes do not prove (backend/messages/uploads.py `classify`)."""

import pytest

from backend.messages.uploads import GENERIC_MIME, LIMITS, Kind, classify, clean_name
from tests.media.outbound.helpers import fixture

PAD = b"\0" * 300


@pytest.mark.parametrize(
    ("head", "declared", "kind", "mime"),
    [
        (fixture("photo.png"), "application/octet-stream", Kind.IMAGE, "image/png"),
        (fixture("voice.ogg"), "video/webm", Kind.VOICE, "audio/ogg"),
        (fixture("boleto.pdf"), "image/png", Kind.DOCUMENT, "application/pdf"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 " + PAD, "", Kind.IMAGE, "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + PAD, "", Kind.VIDEO, "video/mp4"),
        (b"ID3\x03\x00" + PAD, "", Kind.AUDIO, "audio/mpeg"),
        (b"OggS\x00\x02" + b"\0" * 22 + b"\x01vorbis" + PAD, "", Kind.AUDIO, "audio/ogg"),  # not Opus: no voice note
        (b"GIF89a" + PAD, "image/gif", Kind.DOCUMENT, "image/gif"),  # WhatsApp sends no GIF images
        (b"nome;valor\n1;2\n", "text/csv", Kind.DOCUMENT, "text/csv"),
        (fixture("evil.html"), "image/png", Kind.DOCUMENT, GENERIC_MIME),
        (fixture("evil.html"), "text/html", Kind.DOCUMENT, GENERIC_MIME),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", Kind.DOCUMENT, GENERIC_MIME),
        (b"anything", "not a mime type", Kind.DOCUMENT, GENERIC_MIME),
    ],
)
def test_the_kind_comes_from_the_bytes(head: bytes, declared: str, kind: Kind, mime: str) -> None:
    sniffed = classify(head[:262], declared)
    assert (sniffed.kind, sniffed.mime) == (kind, mime)


def test_the_limits_are_whatsapps() -> None:
    mb = 1024 * 1024
    assert LIMITS[Kind.IMAGE] == 5 * mb and LIMITS[Kind.DOCUMENT] == 100 * mb
    assert LIMITS[Kind.VIDEO] == LIMITS[Kind.AUDIO] == LIMITS[Kind.VOICE] == 16 * mb
    assert LIMITS[Kind.STICKER] == 500 * 1024


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("C:\\Users\\ana\\boleto.pdf", "boleto.pdf"),
        ("../../etc/passwd", "passwd"),
        ("nota\x00fiscal\n.pdf", "notafiscal.pdf"),
        ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),
    ],
)
def test_file_names_lose_paths_and_control_characters(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean
