"""A command recorder for tests that check what reaches the database (how many commands, which
filters), attached to a client of their own with `event_listeners=[recorder]`."""

from typing import Any

from pymongo import monitoring


class CommandRecorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for n, command in self.commands if n == name]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
