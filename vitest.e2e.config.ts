import { defineConfig } from 'vitest/config';

// End-to-end suite: tests that start real outside programs (HAProxy, redis-cli,
// redis-benchmark, openssl, nc) on loopback. `npm run test:e2e`; .ci/run installs
// the programs from Debian and runs it after `npm test`. `npm test` never runs these.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.ts'],
    // One file at a time: each starts its own processes and load.
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
