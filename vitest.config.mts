import { defineConfig } from "vitest/config";

// Projects: `unit` is pure (no root, no lab) and runs its files in parallel; `lab` checks the lab
// itself; `integration` drives the provider against lab hosts (root); `booted` against booted
// Debian hosts. Every lab allocates its own host indices, so integration files run side by side.
// Run one with `npx vitest run --project unit`.
const shared = {
  setupFiles: ["test/setup/fail-on-console.ts"],
};

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: { ...shared, name: "unit", include: ["test/unit/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          ...shared,
          name: "lab",
          include: ["test/lab/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          ...shared,
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          maxWorkers: 2,
          sequence: { groupOrder: 2 },
        },
      },
      {
        // Booted Debian lab hosts (systemd-nspawn, a QEMU VM): slow, one file at a time.
        extends: true,
        test: {
          ...shared,
          name: "booted",
          include: ["test/booted/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 900_000,
          fileParallelism: false,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
