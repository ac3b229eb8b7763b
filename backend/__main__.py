"""`python -m backend`: read settings, start this checkout's local FerretDB when no MONGO_URL is
given (development only), then serve the API with uvicorn."""

import os
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
        try:
            local_db = ferretdb.start_local(
                data_dir, listen=settings.FERRETDB_LISTEN, log_path=data_dir.parent / "ferretdb.log"
            )
        except ferretdb.StoreUnavailable as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
        print(
            f"no MONGO_URL: local FerretDB (pid {local_db.proc.pid}) on {local_db.listen}, data in {data_dir}",
            file=sys.stderr,
        )
        # The app (and every uvicorn worker process) connects to the address chosen here.
        os.environ["FERRETDB_LISTEN"] = local_db.listen
        get_settings.cache_clear()
    try:
        uvicorn.run("backend.app:create_app", factory=True, **server.uvicorn_options(settings))
    finally:
        if local_db is not None:
            ferretdb.stop(local_db.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
