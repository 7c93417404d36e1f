import { defineConfig } from 'vitest/config';

/** `npm run test:faults`: the fault scenarios too slow for `npm test` (each bounded, loopback only). */
export default defineConfig({
  test: {
    include: ['{libs,services,apps}/*/test/**/*.fault.test.ts', 'test/faults/**/*.fault.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One scenario at a time: they kill processes and load the machine.
    fileParallelism: false,
  },
});
