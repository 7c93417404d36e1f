import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      '{libs,services,apps,tools}/*/src/**/*.test.ts',
      '{libs,services,apps,tools}/*/test/**/*.test.ts',
      'deploy/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    exclude: ['**/node_modules/**', '**/dist/**', '**/*.fault.test.ts'],
    // Integration tests start real processes against the real PostgreSQL and NATS.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 3,
  },
});
