import { defineConfig } from 'vitest/config';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test/setup.ts'],
    css: false,
    testTimeout: 60_000, // above asyncUtilTimeout (src/test/setup.ts): a failing wait reports its own message
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
  },
});
