"""`python -m backend.webhooks`: the webhook processor alone (no HTTP), behind the API's start-up
gate (backend/gates.py `run_standalone`). Stops on SIGTERM/SIGINT."""

from backend.gates import run_standalone
from backend.webhooks.processor import run_until

if __name__ == "__main__":
    run_standalone(run_until)
