import { lstatSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";

/*
 * Between bind(2) and the chmod to the configured mode, a client could already connect: the path
 * must never be wider than owner-only then, whatever the daemon's umask. chmod is wrapped to read
 * the mode the socket had at that moment.
 */
const seen: number[] = [];
vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs/promises")>();
  return {
    ...fs,
    chmod: async (path: string, mode: number) => {
      seen.push(lstatSync(path).mode & 0o777);
      return fs.chmod(path, mode);
    },
  };
});
const { listenUnix } = await import("../../src/server/listen.js");

let dir: string;
let umask: number;
beforeAll(async () => {
  dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "umask-"));
  umask = process.umask(0); // the most permissive umask a daemon could inherit
});
afterAll(async () => {
  process.umask(umask);
  await rm(dir, { recursive: true, force: true });
});

it("binds the socket owner-only until its configured mode is set, and restores the umask", async () => {
  const path = join(dir, "s.sock");
  const server = await listenUnix(path, { mode: 0o666, onConnection: (s) => s.destroy() });
  try {
    expect(seen).toEqual([0o600]);
    expect(lstatSync(path).mode & 0o777).toBe(0o666);
    expect(process.umask()).toBe(0);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
