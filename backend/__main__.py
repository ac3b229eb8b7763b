"""`python -m backend`: read settings, start a local FerretDB when no MONGO_URL is given
(development only), then serve the API with uvicorn."""

import sys
from pathlib import Path

import uvicorn

from backend.core import server
from backend.core.config import get_settings
from backend.devtools import ferretdb


def main() -> int:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names every bad setting
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    local_db = None
    if not settings.MONGO_URL:
        data_dir = Path(settings.FERRETDB_DATA_DIR)
        print(
            f"no MONGO_URL: starting local FerretDB on {settings.FERRETDB_LISTEN}, data in {data_dir}", file=sys.stderr
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        local_db = ferretdb.start(settings.FERRETDB_LISTEN, data_dir, log_path=data_dir.parent / "ferretdb.log")
    try:
        uvicorn.run("backend.app:create_app", factory=True, **server.uvicorn_options(settings))
    finally:
        if local_db is not None:
            ferretdb.stop(local_db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
