// Starts the real stack once for every e2e file: FerretDB (backend/devtools/ferretdb.py), the fake
// Evolution API of tests/fakes, the backend (`python -m backend`) and the built SPA behind
// `vite preview` proxying /api and the websocket to it.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { preview, type PreviewServer } from 'vite';

const frontend = resolve(__dirname, '..');
const root = resolve(frontend, '..');
const python = process.env.PYTHON || join(root, '.venv', 'bin', 'python');

export const ADMIN = { email: 'admin@e2e.iaze', password: 'admin-e2e-pass-1' };

declare module 'vitest' {
  export interface ProvidedContext {
    appUrl: string;
    apiUrl: string;
    artifacts: string;
    admin: { email: string; password: string };
    evolutionUrl: string;
  }
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? ok(address.port) : fail(new Error('no port'))));
    });
  });
}

// How a child ended ("code 1", "signal SIGKILL"), or null while it runs: one killed by a signal
// has no exit code.
function ended(proc: ChildProcess): string | null {
  if (proc.signalCode !== null) return `signal ${proc.signalCode}`;
  return proc.exitCode === null ? null : `code ${proc.exitCode}`;
}

// `start` given a descriptor appending to `path`, closed again once it has returned (a spawned
// child holds its own copy): none is left open by a try.
function withLog<T>(path: string, start: (fd: number) => T): T {
  const fd = openSync(path, 'a');
  try {
    return start(fd);
  } finally {
    closeSync(fd);
  }
}

async function waitFor(url: string, proc: ChildProcess, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (ended(proc)) throw new Error(`${what} exited with ${ended(proc)}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready at ${url} within ${timeoutMs} ms`);
}

function waitForLine(proc: ChildProcess, marker: string, what: string, timeoutMs = 300_000): Promise<void> {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs);
    let seen = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(marker)) {
        clearTimeout(timer);
        ok();
      }
    });
    proc.once('exit', () => {
      clearTimeout(timer);
      fail(new Error(`${what} exited with ${ended(proc)}`));
    });
  });
}

// Passes the lines `proc` writes on stdout, other than `marker`, on to this process's stderr (the
// console of whoever runs the suite), whole lines at a time.
function relayProgress(proc: ChildProcess, marker: string): void {
  let partial = '';
  proc.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() && line !== marker) process.stderr.write(`${line}\n`);
  });
}

function stop(proc: ChildProcess | undefined, timeoutMs = 10_000): Promise<void> {
  if (!proc || ended(proc)) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    proc.kill('SIGTERM');
  });
}

// FerretDB lives as long as this helper's stdin stays open, so it also ends if the run is killed.
// FerretDB runs in its own session, so SIGTERM to the helper must unwind into `finally` (Python's
// default SIGTERM exits without it, which left FerretDB running after every e2e run).
// The helper's stderr is the try's log. Building FerretDB takes minutes on a first run: its progress
// lines ("building local FerretDB...", "built ...", which ensure_built prints to sys.stderr) go to
// the helper's stdout instead, which relayProgress() passes on to the console; the go commands'
// own output (written to descriptor 2, not through sys.stderr) and any traceback stay in the log.
const FERRET_HOLDER = `
import contextlib
import signal
import sys
from pathlib import Path
from backend.devtools import ferretdb

def _term(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, _term)
with contextlib.redirect_stderr(sys.stdout):
    ferretdb.ensure_built()
proc = ferretdb.start(sys.argv[1], sys.argv[2], log_path=Path(sys.argv[3]))
print("ferretdb ready", flush=True)
try:
    sys.stdin.read()
finally:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ferretdb.stop(proc)
`;

// The last lines a child wrote: CI shows only this run's output, and a child that exits or never
// answers is explained by its own log, not by the wait that noticed it.
function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface Stack {
  ferret: ChildProcess;
  evolution: ChildProcess;
  backend: ChildProcess;
  server: PreviewServer;
  apiUrl: string;
  appUrl: string;
  evolutionUrl: string;
}

// One try at the whole stack on ports picked a moment before the children bind them: between the
// pick and the bind another process (a connection's own port, a leftover of the suite before) can
// take one, and the child then exits. Every child started is stopped again when the try fails.
export async function startStack(work: string): Promise<Stack> {
  const [mongoPort, apiPort, appPort, evolutionPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const evolutionKey = 'e2e-evolution-key';
  // The holder's own output (why the start failed) and FerretDB's, in one log.
  const ferretLog = join(work, 'ferretdb.log');
  const evolutionLog = join(work, 'evolution.log');
  const backendLog = join(work, 'backend.log');
  const started: ChildProcess[] = [];
  let ferret: ChildProcess | undefined;
  try {
    ferret = withLog(ferretLog, (log) =>
      spawn(python, ['-c', FERRET_HOLDER, `127.0.0.1:${mongoPort}`, join(work, 'ferretdb'), ferretLog], { cwd: root, stdio: ['pipe', 'pipe', log] }),
    );
    relayProgress(ferret, 'ferretdb ready');
    try {
      await waitForLine(ferret, 'ferretdb ready', 'FerretDB');
    } catch (error) {
      throw new Error(`${(error as Error).message}\n-- FerretDB's log:\n${tail(ferretLog)}`);
    }

    // The project's fake Evolution API (tests/fakes): a real process that posts real webhooks.
    const evolution = withLog(evolutionLog, (log) =>
      spawn(python, ['-m', 'tests.fakes.evolution_fake', '--port', String(evolutionPort), '--api-key', evolutionKey], { cwd: root, stdio: ['ignore', log, log] }),
    );
    started.push(evolution);
    const evolutionUrl = `http://127.0.0.1:${evolutionPort}`;

    const backend = withLog(backendLog, (log) => spawn(python, ['-m', 'backend'], {
      cwd: root,
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        ENV: 'test',
        HOST: '127.0.0.1',
        PORT: String(apiPort),
        MONGO_URL: `mongodb://127.0.0.1:${mongoPort}/`,
        MONGO_DB: 'iaze_e2e',
        // A fresh store every run: the checkout's deploy-ledger file (on by default) would refuse it.
        LEDGER_FILE: '',
        JWT_SECRET: 'e2e-secret-'.padEnd(48, 'x'),
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        LOG_LEVEL: 'WARNING',
        EVOLUTION_BASE_URL: evolutionUrl,
        EVOLUTION_API_KEY: evolutionKey,
        PUBLIC_BASE_URL: `http://127.0.0.1:${apiPort}`,
        OUTBOUND_POLL_SECONDS: '0.2',
        // A scheduled message goes out within this of its time (10 s by default): scheduled.e2e.ts
        // waits for one set half a minute ahead.
        SCHEDULED_MESSAGES_POLL_SECONDS: '0.5',
        REDIS_URL: '',
      },
    }));
    started.push(backend);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    try {
      await waitFor(`${evolutionUrl}/_control/health`, evolution, 'fake Evolution');
    } catch (error) {
      throw new Error(`${(error as Error).message}\n-- fake Evolution's log:\n${tail(evolutionLog)}`);
    }
    try {
      await waitFor(`${apiUrl}/health/ready`, backend, 'backend');
    } catch (error) {
      throw new Error(`${(error as Error).message}\n-- backend's log:\n${tail(backendLog)}`);
    }
    process.env.BACKEND_URL = apiUrl;
    const server = await preview({
      root: frontend,
      configFile: join(frontend, 'vite.config.ts'),
      logLevel: 'warn',
      preview: { host: '127.0.0.1', port: appPort, strictPort: true, open: false },
    });
    return { ferret, evolution, backend, server, apiUrl, appUrl: `http://127.0.0.1:${appPort}`, evolutionUrl };
  } catch (error) {
    for (const proc of started) await stop(proc);
    if (ferret) {
      ferret.stdin?.end();
      await stop(ferret);
    }
    throw error;
  }
}

const ATTEMPTS = 3;

export default async function setup(project: TestProject) {
  if (!existsSync(join(frontend, 'dist', 'index.html'))) {
    throw new Error('frontend/dist is missing: run `npm run build` before the e2e tests (npm run e2e does).');
  }
  const artifacts = resolve(root, 'test-artifacts', 'e2e');
  const failures: string[] = [];
  let stack: Stack | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS && !stack; attempt++) {
    const work = mkdtempSync(join(tmpdir(), 'iaze-e2e-'));
    try {
      stack = await startStack(work);
    } catch (error) {
      const failure = `try ${attempt} (files in ${work}): ${(error as Error).message}`;
      console.error(`e2e stack did not start, ${failure}`);
      failures.push(failure);
    }
  }
  if (!stack) throw new Error(`the e2e stack did not start in ${ATTEMPTS} tries:\n${failures.join('\n')}`);
  const { ferret, evolution, backend, server } = stack;

  project.provide('appUrl', stack.appUrl);
  project.provide('apiUrl', stack.apiUrl);
  project.provide('artifacts', artifacts);
  project.provide('admin', ADMIN);
  project.provide('evolutionUrl', stack.evolutionUrl);

  return async () => {
    await new Promise<void>((done) => server.httpServer.close(() => done()));
    await stop(backend);
    await stop(evolution);
    ferret.stdin?.end();
    await stop(ferret);
  };
}
