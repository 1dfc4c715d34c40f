import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real daemons and simulators; keep the 2-core machine from thrashing.
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
  },
});
