import { once } from "node:events";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { loadNative, type Native, sdNotify, socketFd } from "../../src/native/index.js";
import {
  listenDatagram,
  listenUnix,
  NOBODY,
  NOGROUP,
  spawnClient,
  type UnixServer,
} from "../fixtures/peer/unix-peer.js";

/**
 * The addon against real kernel objects: Unix sockets between processes of different uids,
 * pidfds of real children, sd_notify datagrams received by a real AF_UNIX SOCK_DGRAM socket.
 * Runs as root (this machine and CI) so that clients can be spawned as nobody.
 */

let native: Native;
let srv: UnixServer;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  native = loadNative();
  srv = await listenUnix();
});

afterAll(async () => {
  await srv?.close();
});

function errOf(f: () => unknown): ExecgateError {
  try {
    f();
  } catch (e) {
    if (e instanceof ExecgateError) return e;
    throw e;
  }
  throw new Error("expected an ExecgateError");
}

describe("peerCred (SO_PEERCRED)", () => {
  it("reports the connecting process's pid, uid and gid across users", async () => {
    const client = spawnClient(srv.path, { uid: NOBODY, gid: NOGROUP });
    try {
      const conn = await srv.nextConnection();
      await client.connected;
      const cred = native.peerCred(socketFd(conn));
      expect(cred).toEqual({ pid: client.pid, uid: NOBODY, gid: NOGROUP });
      conn.destroy();
    } finally {
      await client.kill();
    }
  });

  it("reports root for a root client (uid 0 is a real answer, not a default)", async () => {
    const client = spawnClient(srv.path);
    try {
      const conn = await srv.nextConnection();
      expect(native.peerCred(socketFd(conn))).toEqual({ pid: client.pid, uid: 0, gid: 0 });
      conn.destroy();
    } finally {
      await client.kill();
    }
  });

  it("refuses a TCP socket instead of reporting the kernel's overflow uid", async () => {
    const tcp = createServer();
    tcp.listen(0, "127.0.0.1");
    await once(tcp, "listening");
    const addr = tcp.address();
    if (addr === null || typeof addr === "string") throw new Error("no TCP address");
    const accepted = once(tcp, "connection") as Promise<[Socket]>;
    const c = tcpConnect(addr.port, "127.0.0.1");
    const [conn] = await accepted;
    try {
      const e = errOf(() => native.peerCred(socketFd(conn)));
      expect(e.code).toBe("io_error");
      expect(e.detail.errno).toBe("EAFNOSUPPORT");
    } finally {
      conn.destroy();
      c.destroy();
      tcp.close();
    }
  });

  it("maps bad descriptors to ExecgateError with the errno name", () => {
    const fd = openSync("/dev/null", "r");
    try {
      const devnull = errOf(() => native.peerCred(fd));
      expect(devnull.code).toBe("io_error");
      expect(devnull.detail.errno).toBe("ENOTSOCK");
    } finally {
      closeSync(fd);
    }
    expect(errOf(() => native.peerCred(1_000_000)).detail.errno).toBe("EBADF");
    expect(errOf(() => native.peerCred(-1)).code).toBe("internal");
    expect(errOf(() => native.peerCred(1.5)).code).toBe("internal");
  });
});

describe("peerPidfd (SO_PEERPIDFD) and pidfdIsAlive", () => {
  it("gives a pidfd for the peer that stays valid until the peer exits", async () => {
    const client = spawnClient(srv.path, { uid: NOBODY, gid: NOGROUP });
    const conn = await srv.nextConnection();
    await client.connected;
    const pidfd = native.peerPidfd(socketFd(conn));
    // Linux >= 6.5 everywhere we run (uname -r on this machine and CI: 6.18)
    expect(pidfd).not.toBeNull();
    if (pidfd === null) return;
    try {
      expect(native.pidfdIsAlive(pidfd)).toBe(true);
      await client.kill();
      expect(native.pidfdIsAlive(pidfd)).toBe(false);
    } finally {
      native.closeFd(pidfd);
      conn.destroy();
    }
    // closed: using it again is EBADF, not a silent answer
    expect(errOf(() => native.pidfdIsAlive(pidfd)).detail.errno).toBe("EBADF");
  });

  it("refuses a TCP socket", async () => {
    const tcp = createServer();
    tcp.listen(0, "127.0.0.1");
    await once(tcp, "listening");
    const addr = tcp.address();
    if (addr === null || typeof addr === "string") throw new Error("no TCP address");
    const accepted = once(tcp, "connection") as Promise<[Socket]>;
    const c = tcpConnect(addr.port, "127.0.0.1");
    const [conn] = await accepted;
    try {
      expect(errOf(() => native.peerPidfd(socketFd(conn))).detail.errno).toBe("EAFNOSUPPORT");
    } finally {
      conn.destroy();
      c.destroy();
      tcp.close();
    }
  });
});

describe("socketFd", () => {
  it("refuses a destroyed socket", async () => {
    const client = spawnClient(srv.path);
    try {
      const conn = await srv.nextConnection();
      conn.destroy();
      expect(errOf(() => socketFd(conn)).code).toBe("io_error");
    } finally {
      await client.kill();
    }
  });
});

describe("sdNotify (sd_notify(3) datagrams)", () => {
  it("is a no-op returning false without NOTIFY_SOCKET", () => {
    expect(sdNotify("READY=1", {})).toBe(false);
    expect(sdNotify("READY=1", { NOTIFY_SOCKET: "" })).toBe(false);
  });

  it("sends one datagram to a filesystem socket", async () => {
    const dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "notify-"));
    const listener = await listenDatagram(join(dir, "notify"));
    try {
      expect(sdNotify("READY=1\nSTATUS=epoch 7 verified", { NOTIFY_SOCKET: listener.address })).toBe(true);
      expect((await listener.next()).toString()).toBe("READY=1\nSTATUS=epoch 7 verified");
      expect(sdNotify("STOPPING=1", { NOTIFY_SOCKET: listener.address })).toBe(true);
      expect((await listener.next()).toString()).toBe("STOPPING=1");
    } finally {
      await listener.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("sends to an abstract '@' address", async () => {
    const name = `@execgate-test-notify-${process.pid}-${Date.now()}`;
    const listener = await listenDatagram(name);
    try {
      expect(sdNotify("WATCHDOG=1", { NOTIFY_SOCKET: name })).toBe(true);
      expect((await listener.next()).toString()).toBe("WATCHDOG=1");
      // UTF-8 goes through byte for byte
      expect(sdNotify("STATUS=prüfung ✓", { NOTIFY_SOCKET: name })).toBe(true);
      expect((await listener.next()).toString("utf8")).toBe("STATUS=prüfung ✓");
    } finally {
      await listener.stop();
    }
  });

  it("fails closed with a named error when nobody listens or the address is unusable", () => {
    const gone = errOf(() => sdNotify("READY=1", { NOTIFY_SOCKET: "/nonexistent/execgate/notify" }));
    expect(gone.code).toBe("io_error");
    expect(gone.detail.errno).toBe("ENOENT");
    const abstractGone = errOf(() =>
      sdNotify("READY=1", { NOTIFY_SOCKET: `@execgate-nobody-${process.pid}` }),
    );
    expect(abstractGone.detail.errno).toBe("ECONNREFUSED");
    expect(errOf(() => sdNotify("READY=1", { NOTIFY_SOCKET: "relative/path" })).code).toBe("unsupported");
    expect(errOf(() => sdNotify("READY=1", { NOTIFY_SOCKET: "vsock:2:1234" })).code).toBe("unsupported");
    expect(errOf(() => sdNotify("READY=1", { NOTIFY_SOCKET: `/${"x".repeat(120)}` })).code).toBe(
      "unsupported",
    );
    expect(errOf(() => sdNotify("READY=1\0x", { NOTIFY_SOCKET: "/run/x" })).code).toBe("internal");
  });
});
