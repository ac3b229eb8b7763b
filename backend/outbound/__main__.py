"""`python -m backend.outbound`: the outbound worker alone (no HTTP), behind the API's start-up
gate (backend/gates.py `run_standalone`). Stops on SIGTERM/SIGINT."""

from backend.gates import run_standalone
from backend.outbound.worker import run_until

if __name__ == "__main__":
    run_standalone(run_until)
