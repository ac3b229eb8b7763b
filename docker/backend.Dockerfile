# The backend image: API (`python -m backend`) and the operations scripts (backup service).
# Build from the repository root: docker build -f docker/backend.Dockerfile .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
# pg_dump/pg_restore/psql for the backup of Evolution's PostgreSQL, same major as evolution-postgres
# (Debian 12 "bookworm", pinned above, ships client 15; upgrade the two together).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY backend ./backend
COPY scripts ./scripts

# Never root: a fixed uid so ./backups on the host can be chown'ed to it (see DEPLOY_RULES.md).
# /var/lib/iaze holds the deploy ledger's file copy (docs/PERSISTENCE.md), on its own volume.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin iaze \
    && mkdir -p /backups /var/lib/iaze && chown iaze /backups /var/lib/iaze
USER 10001

EXPOSE 8000
# Ready = database reachable and start-up checks (ledger guard, migrations, indexes) passed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT','8000')}/health/ready\", timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "backend"]
