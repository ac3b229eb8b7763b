from tests.fakes.harness import app, backend_port, evolution, settings, settings_overrides

__all__ = ["app", "backend_port", "evolution", "settings", "settings_overrides"]
