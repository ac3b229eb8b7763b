import { chmodSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// e2e/global-setup.ts's start of the stack, with a shell script standing in for the project's
// Python: its second argument says which child it plays, FAKE how that child fails.
const FAKE_PYTHON = `#!/bin/sh
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

// Never reached (every try here fails before the SPA is served), and esbuild, which vite loads,
// refuses jsdom's typed arrays.
vi.mock('vite', () => ({ preview: vi.fn() }));

let startStack: (work: string) => Promise<unknown>;
const bin = mkdtempSync(join(tmpdir(), 'iaze-fake-python-'));

beforeAll(async () => {
  writeFileSync(join(bin, 'python'), FAKE_PYTHON);
  chmodSync(join(bin, 'python'), 0o755);
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
});
