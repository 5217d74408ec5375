import { defineConfig } from "vitest/config";

// Integration tests talk to real swtpm / SoftHSM2 processes; each test file gets its own
// instance, so files may run in parallel, but a TPM call can take tens of milliseconds.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default"],
  },
});
