import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Lab hosts use fixed addresses in 198.18.0.0/15, so test files run one at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // A test that prints to the console is noise at best; the reporter keeps stdout for results.
    onConsoleLog: () => false,
  },
});
