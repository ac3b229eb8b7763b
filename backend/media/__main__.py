"""`python -m backend.media`: the inbound media fetcher alone (no HTTP), behind the API's start-up
gate (backend/gates.py `run_standalone`). Stops on SIGTERM/SIGINT. Safe beside the fetchers of the
API processes (each attempt is claimed by a unique insert), so MEDIA_FETCH_ENABLED may stay on."""

from backend.gates import run_standalone
from backend.media.worker import run_until

if __name__ == "__main__":
    run_standalone(run_until)
