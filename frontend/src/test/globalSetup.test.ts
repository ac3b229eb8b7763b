import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// e2e/global-setup.ts's start of the stack, with a shell script standing in for the project's
// Python: its second argument says which child it plays, FAKE how that child fails. With FAKE=build
// the FerretDB holder's own script runs in a real python3, from a folder where
// backend.devtools.ferretdb is STAND_IN_FERRETDB (`python -c` looks in the current folder first).
const FAKE_PYTHON = `#!/bin/sh
if [ "$FAKE" = build ]; then cd "$STAND_IN" && exec python3 "$@"; fi
case "$2" in
  backend) exec sleep 30 ;;
  tests.fakes.evolution_fake)
    echo 'evolution: starting' >&2
    [ "$FAKE" = signal ] && kill -9 $$
    exit 1 ;;
esac
if [ "$FAKE" = ferret ]; then echo 'ferretdb: address already in use' >&2; exit 1; fi
echo 'ferretdb ready'
exec cat >/dev/null
`;

// A first run's build: its progress printed to sys.stderr, as backend/devtools/ferretdb.py's
// ensure_built does, and a go command's own output written to descriptor 2 by a child; then a start
// that fails, so the try ends with the log's tail.
const STAND_IN_FERRETDB = `
import subprocess
import sys

_built = False

def ensure_built():
    global _built
    if _built:
        return
    print("building local FerretDB (first run downloads modules; a few minutes)...", file=sys.stderr, flush=True)
    subprocess.run(["sh", "-c", "echo 'go: downloading github.com/FerretDB/FerretDB' >&2"], check=True)
    print("built stand-in", file=sys.stderr, flush=True)
    _built = True

def start(listen, data_dir, *, log_path=None):
    ensure_built()
    raise RuntimeError("stand-in FerretDB: address already in use")
`;
// Never reached (every try here fails before the SPA is served), and esbuild, which vite loads,
// refuses jsdom's typed arrays.
vi.mock('vite', () => ({ preview: vi.fn() }));

let startStack: (work: string) => Promise<unknown>;
const bin = mkdtempSync(join(tmpdir(), 'iaze-fake-python-'));

beforeAll(async () => {
  writeFileSync(join(bin, 'python'), FAKE_PYTHON);
  chmodSync(join(bin, 'python'), 0o755);
  const devtools = join(bin, 'stand-in', 'backend', 'devtools');
  mkdirSync(devtools, { recursive: true });
  writeFileSync(join(bin, 'stand-in', 'backend', '__init__.py'), '');
  writeFileSync(join(devtools, '__init__.py'), '');
  writeFileSync(join(devtools, 'ferretdb.py'), STAND_IN_FERRETDB);
  vi.stubEnv('STAND_IN', join(bin, 'stand-in'));
  vi.stubEnv('PYTHON', join(bin, 'python')); // read as the module loads
  ({ startStack } = await import('../../e2e/global-setup'));
});

afterAll(() => {
  vi.unstubAllEnvs(); // the test files share one process (vitest.config.ts)
  rmSync(bin, { recursive: true, force: true });
});

/** The failed try's message, and the descriptors this process still holds on the try's files. */
async function failedTry(fake: string) {
  vi.stubEnv('FAKE', fake);
  const work = mkdtempSync(join(tmpdir(), 'iaze-e2e-test-'));
  const error: Error = await startStack(work).then(
    () => expect.fail('the stack started'),
    (e: Error) => e,
  );
  const open = readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(work);
    } catch {
      return false; // closed meanwhile (the listing's own)
    }
  });
  rmSync(work, { recursive: true, force: true });
  return { message: error.message, open };
}

describe.runIf(process.platform === 'linux')('e2e global setup', () => {
  it("explains a FerretDB that did not start with its log's tail", async () => {
    const { message, open } = await failedTry('ferret');
    expect(message).toContain('FerretDB exited with code 1');
    expect(message).toContain('ferretdb: address already in use');
    expect(open).toEqual([]);
  });

  it('notices a child killed by a signal, and leaves no log open', async () => {
    const { message, open } = await failedTry('signal');
    expect(message).toContain('fake Evolution exited with signal SIGKILL');
    expect(message).toContain('evolution: starting');
    expect(open).toEqual([]);
  });

  it("shows FerretDB's build progress on the console, and keeps the build's own output in the log", async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let failed: Awaited<ReturnType<typeof failedTry>>;
    let shown: string;
    try {
      failed = await failedTry('build');
    } finally {
      shown = stderr.mock.calls.map(([text]) => String(text)).join('');
      stderr.mockRestore();
    }
    const { message, open } = failed;
    expect(shown).toContain('building local FerretDB (first run downloads modules; a few minutes)...\n');
    expect(shown).toContain('built stand-in\n');
    expect(shown).not.toContain('go: downloading');
    // The log, as the failed try reports its tail: the child's output and why the start failed.
    expect(message).toContain('FerretDB exited with code 1');
    expect(message).toContain('go: downloading github.com/FerretDB/FerretDB');
    expect(message).toContain('stand-in FerretDB: address already in use');
    expect(open).toEqual([]);
  });
});
