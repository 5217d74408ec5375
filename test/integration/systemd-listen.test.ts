import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { openListener } from "../../src/server/activation.js";
import { gidFromGroupFile, resolveGroup } from "../../src/server/listen.js";

/*
 * openListener without systemd: binds the configured path itself (safely), with the configured
 * mode and group; an inherited environment naming another process is ignored and scrubbed.
 * (Adopting a real activated socket is tested end to end in test/e2e/daemon-systemd.test.ts.)
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "listen-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function errOf(p: Promise<unknown>): Promise<ExecgateError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ExecgateError) return e;
    throw e;
  }
  throw new Error("expected an ExecgateError");
}

describe("openListener, not activated", () => {
  it("binds the path with the mode and group asked for, and scrubs a LISTEN_* environment meant for another process", async () => {
    const path = join(dir, "a.sock");
    const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid + 1), LISTEN_FDS: "1" };
    const groupFile = await import("node:fs/promises").then((f) => f.readFile("/etc/group", "utf8"));
    const group = groupFile.includes("\nnogroup:") ? "nogroup" : "65534";
    const l = await openListener({ path, mode: 0o660, group, onConnection: (s) => s.destroy(), env });
    try {
      expect(l.activated).toBe(false);
      expect(l.address).toBe(path);
      expect(env).toEqual({});
      const st = await stat(path);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(0o660);
      expect(st.gid).toBe(await resolveGroup(group));
      const c = connect(path);
      await new Promise<void>((resolve, reject) => c.once("connect", resolve).once("error", reject));
      c.destroy();
    } finally {
      await new Promise<void>((resolve) => l.server.close(() => resolve()));
    }
  });

  it("never removes a path that is not a socket, and refuses a live socket", async () => {
    const file = join(dir, "not-a-socket");
    await writeFile(file, "precious");
    expect(
      (await errOf(openListener({ path: file, mode: 0o660, onConnection: () => undefined, env: {} }))).code,
    ).toBe("config_invalid");
    expect((await stat(file)).isFile()).toBe(true);
    const live = join(dir, "live.sock");
    const first = await openListener({ path: live, mode: 0o600, onConnection: (s) => s.destroy(), env: {} });
    try {
      const e = await errOf(
        openListener({ path: live, mode: 0o600, onConnection: () => undefined, env: {} }),
      );
      expect(e.message).toContain("another daemon");
    } finally {
      await new Promise<void>((resolve) => first.server.close(() => resolve()));
    }
  });

  it("an unknown socket group is a configuration error, before anything is bound", async () => {
    const path = join(dir, "g.sock");
    const e = await errOf(
      openListener({
        path,
        mode: 0o660,
        group: "no-such-group-execgate",
        onConnection: () => undefined,
        env: {},
      }),
    );
    expect(e.code).toBe("config_invalid");
    await expect(stat(path)).rejects.toThrow();
  });

  it("activation that passes anything but one socket is refused", async () => {
    const env = { LISTEN_PID: String(process.pid), LISTEN_FDS: "2" };
    const e = await errOf(
      openListener({ path: join(dir, "x.sock"), mode: 0o660, onConnection: () => undefined, env }),
    );
    expect(e.message).toContain("exactly one");
  });
});

describe("group lookup", () => {
  it("reads name:password:gid:members lines; numbers pass through", async () => {
    const text = "root:x:0:\nexecgate-clients:x:994:alice,bob\nbad:x:notanumber:\n";
    expect(gidFromGroupFile(text, "execgate-clients")).toBe(994);
    expect(gidFromGroupFile(text, "root")).toBe(0);
    expect(gidFromGroupFile(text, "bad")).toBeUndefined();
    expect(gidFromGroupFile(text, "execgate")).toBeUndefined();
    expect(await resolveGroup("1234", "/nonexistent")).toBe(1234);
    const f = join(dir, "group");
    await writeFile(f, text);
    expect(await resolveGroup("execgate-clients", f)).toBe(994);
  });
});
