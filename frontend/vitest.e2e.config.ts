import { defineConfig } from 'vitest/config';

// End-to-end: a real backend on FerretDB, the built SPA behind `vite preview`, Debian's Chromium.
export default defineConfig({
  test: {
    environment: 'node',
    include: ['e2e/**/*.e2e.ts'],
    globalSetup: ['e2e/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 240_000,
    // expect.poll gives up after 1 s by default: on CI's loaded 2-core machine a socket event or a
    // re-render can take longer while nothing is wrong. The same bound as the pages' own waits
    // (context.setDefaultTimeout in e2e/support.ts); a poll still ends as soon as it holds.
    expect: { poll: { timeout: 10_000 } },
    fileParallelism: false,
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
  },
});
