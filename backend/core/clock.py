from datetime import UTC, datetime


def utcnow() -> datetime:
    """Millisecond precision, because that is what BSON dates keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """PyMongo returns naive UTC datetimes; make them aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
