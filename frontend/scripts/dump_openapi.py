"""Print the backend's OpenAPI document as JSON (no database needed: routes only)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.app import create_app  # noqa: E402
from backend.core.config import Settings  # noqa: E402

json.dump(create_app(Settings(_env_file=None)).openapi(), sys.stdout, indent=1, sort_keys=False)
