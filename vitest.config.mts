import { defineConfig } from "vitest/config";

// Projects: `unit` is pure (no root, no lab); `lab` checks the lab itself; `integration` drives the
// provider against lab hosts (root); `booted` against booted Debian hosts. Every lab allocates its
// own host indices, so integration files may run side by side: they take vitest's default worker
// count (cores - 1). On 2 cores two workers were no faster (QEMU guests under TCG are CPU-bound),
// so one it is there; `--maxWorkers=N` asks for more.
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
          sequence: { groupOrder: 2 },
        },
      },
      {
        // Hostile input, parallel load, secrets and faults on lab hosts (root): see test/abuse.
        extends: true,
        test: {
          ...shared,
          name: "abuse",
          include: ["test/abuse/**/*.test.ts"],
          testTimeout: 300_000,
          hookTimeout: 180_000,
          sequence: { groupOrder: 2 },
        },
      },
      {
        // The packed tarball installed beside another @pulumi/pulumi (npm registry), and the code
        // `pulumi import` prints compiled with tsc: needs `npm run build` first.
        extends: true,
        test: {
          ...shared,
          name: "package",
          include: ["test/package/**/*.test.ts"],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
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
