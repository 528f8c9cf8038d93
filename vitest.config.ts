import { defineConfig } from 'vitest/config';

// Real servers take a while to answer on a shared two-core machine: tests wait on events, not clocks.
const withServers = {
  globalSetup: ['tests/setup/global-setup.ts'],
  testTimeout: 120_000,
  hookTimeout: 180_000,
  // `npm run record-histories`: the recorder names a workflow after the test that started it.
  setupFiles: process.env.RECORD_HISTORIES ? ['tests/replay/record-test-names.ts'] : [],
};

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      // Generous: parser threads start slowly on a loaded machine; nothing here asserts on time.
      { test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], testTimeout: 30_000 } },
      { test: { name: 'workflows', include: ['tests/workflows/**/*.test.ts'], ...withServers } },
      // Replays the committed workflow histories: no servers, the bundle is built once per file.
      { test: { name: 'replay', include: ['tests/replay/**/*.test.ts'], testTimeout: 60_000 } },
      {
        test: {
          name: 'integration',
          include: ['tests/integration/**/*.test.ts', 'tests/e2e/**/*.test.ts', 'tests/adversarial/**/*.test.ts'],
          ...withServers,
        },
      },
      // Production processes killed and Temporal stopped under load (tests/chaos): minutes per file, not seconds.
      { test: { name: 'chaos', include: ['tests/chaos/**/*.test.ts'], ...withServers, testTimeout: 20 * 60_000 } },
    ],
  },
});
