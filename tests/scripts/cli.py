"""Runs the operations CLIs as an operator would: a separate process, real arguments, real exit codes."""

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def env_for(mongo_url: str, db_name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "BACKUP_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENV": "test",
            "MONGO_URL": mongo_url,
            "MONGO_DB": db_name,
            "COLUMNS": "160",
            "NO_COLOR": "1",
            **extra,
        }
    )
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path, limit_s: float = 300) -> Result:
    """`args` start with the module, e.g. ("scripts.deploy_check", "verify", ...)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def run_shell(command: str, *, env: dict[str, str], cwd: Path, limit_s: float = 300) -> Result:
    """A command line exactly as DEPLOY_RULES.md shows it."""
    proc = await asyncio.create_subprocess_shell(
        command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
