import { createHash } from "node:crypto";
import { readFileSync, realpathSync } from "node:fs";
import {
  appendFile,
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rmdir,
  stat,
  truncate,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { loadNative, type Native } from "../../src/native/index.js";
import { ExeDigestCache, MAX_EXE_BYTES } from "../../src/peer/exe-digest.js";
import { type IdentifyOptions, identifyPeer, type PeerIdentity } from "../../src/peer/identify.js";
import { parseProcStat } from "../../src/peer/proc-parse.js";
import { type ProcSource, procfs } from "../../src/peer/procfs.js";
import { executorMatches } from "../../src/policy/access.js";
import {
  type Client,
  listenUnix,
  NOBODY,
  NOGROUP,
  PYTHON_CLIENT,
  PYTHON_EXEC_CLIENT,
  spawnClient,
  takePid,
  type UnixServer,
} from "../fixtures/peer/unix-peer.js";

/**
 * identifyPeer end to end: real clients of other uids on a real Unix socket, /proc of real
 * processes, real PID reuse through ns_last_pid, a real cgroup v2 hierarchy for units.
 * Runs as root (this machine and CI).
 */

const SYSTEM_PYTHON = "/usr/bin/python3.11";

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

const sha256File = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");
const startTimeOf = (pid: number): number =>
  parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8")).startTime;

async function expectFailure(p: Promise<unknown>, code: string, check?: string): Promise<ExecgateError> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ExecgateError)) throw e;
    expect(e.code).toBe(code);
    if (check !== undefined) expect(e.detail.check).toBe(check);
    return e;
  }
  throw new Error(`expected ExecgateError ${code}`);
}

/** Connects a client and returns it with the server side of its connection. */
async function connectClient(opts: Parameters<typeof spawnClient>[1] = {}) {
  const client = spawnClient(srv.path, opts);
  const conn = await srv.nextConnection();
  await client.connected;
  return { client, conn };
}

async function identified(opts: Parameters<typeof spawnClient>[1], idOpts: IdentifyOptions = {}) {
  const { client, conn } = await connectClient(opts);
  try {
    return { client, id: await identifyPeer(conn, { native, ...idOpts }) };
  } finally {
    conn.destroy();
    await client.kill();
  }
}

describe("identifyPeer: who is calling, from the kernel", () => {
  it("a client running as nobody: pid, uid, gid, start time, exe and its digest", async () => {
    const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
    try {
      const id = await identifyPeer(conn);
      const exe = realpathSync(process.execPath);
      expect(id).toMatchObject({
        pid: client.pid,
        uid: NOBODY,
        gid: NOGROUP,
        startTime: startTimeOf(client.pid),
        exe,
        exePathVerified: true,
        exeSha256: sha256File(exe),
        pidfdChecked: true,
      });
      expect(id.exeSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(id.imaExeDigest).toBeUndefined();
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("pidfd 'off' gives the same identity with only the start-time re-check; 'require' works on this kernel", async () => {
    const off = await identified({ uid: NOBODY, gid: NOGROUP }, { pidfd: "off" });
    expect(off.id).toMatchObject({ pid: off.client.pid, uid: NOBODY, pidfdChecked: false });
    const req = await identified({ uid: NOBODY, gid: NOGROUP }, { pidfd: "require" });
    expect(req.id).toMatchObject({ pid: req.client.pid, uid: NOBODY, pidfdChecked: true });
  });

  it("fails closed when the addon is missing a pid (peer in another pid namespace)", async () => {
    const { client, conn } = await connectClient();
    try {
      const noPid: Native = { ...native, peerCred: (fd) => ({ ...native.peerCred(fd), pid: 0 }) };
      await expectFailure(identifyPeer(conn, { native: noPid }), "verification_failed", "peer_no_pid");
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("pidfd 'require' on a kernel without SO_PEERPIDFD: unsupported", async () => {
    const { client, conn } = await connectClient();
    try {
      const oldKernel: Native = { ...native, peerPidfd: () => null };
      await expectFailure(identifyPeer(conn, { native: oldKernel, pidfd: "require" }), "unsupported");
      const id = await identifyPeer(conn, { native: oldKernel });
      expect(id).toMatchObject({ pid: client.pid, pidfdChecked: false });
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it.each(["EINVAL", "ESRCH"])(
    "SO_PEERPIDFD failing with %s (peer already reaped) is peer_exited, not a fall-back to start times",
    async (errno) => {
      const { client, conn } = await connectClient();
      try {
        const reaped: Native = {
          ...native,
          peerPidfd: () => {
            throw new ExecgateError("io_error", `peerPidfd: ${errno}`, { errno, syscall: "peerPidfd" });
          },
        };
        await expectFailure(identifyPeer(conn, { native: reaped }), "verification_failed", "peer_exited");
      } finally {
        conn.destroy();
        await client.kill();
      }
    },
  );

  it("a daemon without CAP_SYS_PTRACE gets io_error naming the capability", async () => {
    const { client, conn } = await connectClient(); // a root client
    try {
      // fsuid follows euid; glibc applies setxid to every thread, libuv's pool included
      process.seteuid?.(NOBODY);
      let e: ExecgateError;
      try {
        e = await expectFailure(identifyPeer(conn, { native, exeDigests: new ExeDigestCache() }), "io_error");
      } finally {
        process.seteuid?.(0);
      }
      expect(process.geteuid?.()).toBe(0);
      expect(e.detail.errno).toBe("EACCES");
      expect(e.message).toContain("CAP_SYS_PTRACE");
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("leaks no descriptors (pidfds and exe handles are closed, on success and on failure)", async () => {
    const fds = async () => (await readdir("/proc/self/fd")).length;
    const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
    try {
      await identifyPeer(conn, { native });
      const before = await fds();
      for (let i = 0; i < 20; i++) await identifyPeer(conn, { native });
      const failing: IdentifyOptions = {
        native,
        imaExeDigest: async () => {
          throw new ExecgateError("verification_failed", "no");
        },
      };
      for (let i = 0; i < 20; i++) await identifyPeer(conn, failing).catch(() => undefined);
      expect(await fds()).toBe(before);
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it.each(["prefer", "off"] as const)(
    "a client that exited before the lookup is refused (pidfd %s)",
    async (mode) => {
      const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
      try {
        await client.kill();
        await expectFailure(
          identifyPeer(conn, { native, pidfd: mode }),
          "verification_failed",
          "peer_exited",
        );
      } finally {
        conn.destroy();
      }
    },
  );
});

describe("identifyPeer: PID reuse", () => {
  it("pid taken by another process after connect: the pidfd says the caller is gone", async () => {
    const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
    const pid = client.pid;
    await client.kill();
    const impostor = await takePid(pid);
    expect(impostor, `could not take pid ${pid} through ns_last_pid`).toBeDefined();
    try {
      expect(readFileSync(`/proc/${pid}/stat`, "utf8")).toMatch(/\(python/);
      await expectFailure(identifyPeer(conn, { native }), "verification_failed", "peer_exited");
      // Known limit, and why pidfd "prefer" is the default: the start-time re-check alone
      // cannot see reuse that happened before the first /proc read.
      const blind = await identifyPeer(conn, { native, pidfd: "off" });
      expect(blind.pid).toBe(pid);
      expect(blind.exe).not.toBe(realpathSync(process.execPath));
    } finally {
      conn.destroy();
      await impostor?.stop();
    }
  });

  /** A /proc source that runs `between` after the first reads, before the re-check. */
  function racing(between: () => Promise<void>): ProcSource {
    const real = procfs();
    return {
      ...real,
      async readCgroup(pid) {
        const text = await real.readCgroup(pid);
        await between();
        return text;
      },
    };
  }

  it.each(["prefer", "off"] as const)(
    "pid reused while the lookup runs: start time changed (pidfd %s)",
    async (mode) => {
      const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
      let impostor: Awaited<ReturnType<typeof takePid>>;
      try {
        const proc = racing(async () => {
          await client.kill();
          impostor = await takePid(client.pid);
          expect(impostor, `could not take pid ${client.pid}`).toBeDefined();
        });
        await expectFailure(
          identifyPeer(conn, { native, proc, pidfd: mode }),
          "verification_failed",
          "peer_pid_reused",
        );
      } finally {
        conn.destroy();
        await client.kill();
        await impostor?.stop();
      }
    },
  );

  it("the peer exec()s another file while the lookup runs: refused (same pid, same start time)", async () => {
    const { client, conn } = await connectClient({
      uid: NOBODY,
      gid: NOGROUP,
      argv: [SYSTEM_PYTHON, "-c", PYTHON_EXEC_CLIENT],
    });
    try {
      const proc = racing(async () => {
        conn.write("e");
        for (
          let i = 0;
          i < 500 && (await readlink(`/proc/${client.pid}/exe`)) !== realpathSync("/bin/sleep");
          i++
        ) {
          await new Promise((r) => setTimeout(r, 10));
        }
      });
      const e = await expectFailure(
        identifyPeer(conn, { native, proc }),
        "verification_failed",
        "peer_exe_changed",
      );
      expect(e.detail.pid).toBe(client.pid);
      // the process is still there, now as sleep: a fresh lookup reports what it runs now
      const now = await identifyPeer(conn, { native });
      expect(now.exe).toBe(realpathSync("/bin/sleep"));
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("start time mismatch on the re-read is refused", async () => {
    const { client, conn } = await connectClient();
    try {
      const real = procfs();
      let reads = 0;
      const proc: ProcSource = {
        ...real,
        async readStat(pid) {
          const text = await real.readStat(pid);
          if (++reads === 1) return text;
          const st = parseProcStat(text);
          return text.replace(` ${st.startTime} `, ` ${st.startTime + 1} `);
        },
      };
      await expectFailure(
        identifyPeer(conn, { native, proc, pidfd: "off" }),
        "verification_failed",
        "peer_pid_reused",
      );
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("reuse the start time cannot see (same clock tick): the pidfd still catches it", async () => {
    const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
    try {
      const real = procfs();
      let firstStat: string | undefined;
      const proc: ProcSource = {
        ...real,
        async readStat(pid) {
          if (firstStat !== undefined) return firstStat; // the "new" process shows the same start time
          firstStat = await real.readStat(pid);
          return firstStat;
        },
        async readCgroup(pid) {
          const text = await real.readCgroup(pid);
          await client.kill();
          return text;
        },
      };
      await expectFailure(identifyPeer(conn, { native, proc }), "verification_failed", "peer_exited");
    } finally {
      conn.destroy();
      await client.kill();
    }
  });
});

describe("identifyPeer: executable digest cache", () => {
  async function runCopy(exe: string, cache: ExeDigestCache): Promise<{ id: PeerIdentity; client: Client }> {
    return identified({ argv: [exe, "-c", PYTHON_CLIENT] }, { native, exeDigests: cache });
  }

  it("hashes each file version once and re-hashes when the file changes", async () => {
    const dir = join(srv.dir, "bin");
    await mkdir(dir, { recursive: true });
    const exe = join(dir, "py");
    await copyFile(SYSTEM_PYTHON, exe);
    const cache = new ExeDigestCache();

    const a = await runCopy(exe, cache);
    expect(a.id.exe).toBe(exe);
    expect(a.id.exeSha256).toBe(sha256File(SYSTEM_PYTHON));
    expect(cache.misses).toBe(1);

    const b = await runCopy(exe, cache);
    expect(b.id.exeSha256).toBe(a.id.exeSha256);
    expect(cache).toMatchObject({ hits: 1, misses: 1 });

    // in place (same inode), longer
    const before = await stat(exe);
    await appendFile(exe, "\n# execgate test: appended\n");
    expect((await stat(exe)).ino).toBe(before.ino);
    const c = await runCopy(exe, cache);
    expect(c.id.exeSha256).toBe(sha256File(exe));
    expect(c.id.exeSha256).not.toBe(a.id.exeSha256);
    expect(cache.misses).toBe(2);

    // in place, same size, mtime put back: only ctime tells
    const T = 1_700_000_000; // whole seconds, so utimes() restores mtime exactly
    await utimes(exe, T, T);
    const same = await runCopy(exe, cache); // new mtime: hashed again, same content
    expect(same.id.exeSha256).toBe(c.id.exeSha256);
    expect(cache.misses).toBe(3);
    const st = await stat(exe, { bigint: true });
    const fh = await open(exe, "r+");
    await fh.write(Buffer.from("# execgate test: REWRITTEN\n"), 0, 27, Number(st.size) - 27);
    await fh.close();
    await utimes(exe, T, T);
    const st2 = await stat(exe, { bigint: true });
    expect([st2.size, st2.mtimeNs, st2.ino]).toEqual([st.size, st.mtimeNs, st.ino]);
    expect(st2.ctimeNs).not.toBe(st.ctimeNs);
    const d = await runCopy(exe, cache);
    expect(d.id.exeSha256).toBe(sha256File(exe));
    expect(d.id.exeSha256).not.toBe(c.id.exeSha256);
    expect(cache.misses).toBe(4);

    // replaced by rename (a package upgrade): new inode
    await copyFile(SYSTEM_PYTHON, `${exe}.new`);
    await appendFile(`${exe}.new`, "\n# execgate test: upgraded\n");
    await rename(`${exe}.new`, exe);
    const e = await runCopy(exe, cache);
    expect(e.id.exeSha256).toBe(sha256File(exe));
    expect(new Set([a, c, d, e].map((r) => r.id.exeSha256)).size).toBe(4);
    expect(cache.misses).toBe(5);
  });

  it("hashes the image the process runs, not whatever the path names now", async () => {
    const dir = join(srv.dir, "bin2");
    await mkdir(dir, { recursive: true });
    const exe = join(dir, "py");
    await copyFile(SYSTEM_PYTHON, exe);
    const { client, conn } = await connectClient({ argv: [exe, "-c", PYTHON_CLIENT] });
    try {
      await writeFile(`${exe}.new`, "#!/bin/sh\necho not python\n", { mode: 0o755 });
      await rename(`${exe}.new`, exe);
      const id = await identifyPeer(conn, { native, exeDigests: new ExeDigestCache() });
      expect(id.exeSha256).toBe(sha256File(SYSTEM_PYTHON));
      expect(id.exe).toBe(`${exe} (deleted)`);
      expect(id.exePathVerified).toBe(false);
    } finally {
      conn.destroy();
      await client.kill();
    }
  });
});

describe("identifyPeer: the executable's path from another mount namespace", () => {
  /** Bind-mounts `fake` over `path` in a private mount namespace (unshare -m, as root), then runs `path`. */
  function boundOver(fake: string, path: string): Parameters<typeof spawnClient>[1] {
    return {
      argv: [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" "$1" && exec "$1" -c "$2" "$3"',
        fake,
        path,
        PYTHON_CLIENT,
      ],
    };
  }

  it("a binary bind-mounted over an allowed path is not that path: exe_paths does not match, exe_sha256 still does", async () => {
    const dir = join(srv.dir, "bin-ns");
    await mkdir(dir, { recursive: true });
    const allowed = join(dir, "allowed");
    const evil = join(dir, "evil");
    await copyFile(SYSTEM_PYTHON, allowed);
    await copyFile(SYSTEM_PYTHON, evil);
    await appendFile(evil, "\n# execgate test: not the allowed binary\n");
    const { client, id } = await identified(boundOver(evil, allowed), {
      exeDigests: new ExeDigestCache(),
    });
    // the path is the caller's view; the image it runs is the bound file, another inode here
    expect(id).toMatchObject({ pid: client.pid, uid: 0, exe: allowed });
    expect(id.exeSha256).toBe(sha256File(evil));
    expect(id.exePathVerified).toBe(false);
    const byPath = { name: "p", uids: [0], gids: [], exePaths: [allowed], scopes: ["s"] };
    expect(executorMatches(byPath, id)).toBe(false);
    const byDigest = { name: "d", uids: [0], gids: [], exeSha256: [sha256File(evil)], scopes: ["s"] };
    expect(executorMatches(byDigest, id)).toBe(true);

    // control: the same path run in the daemon's namespace is verified and matches
    const plain = await identified(
      { argv: [allowed, "-c", PYTHON_CLIENT] },
      { exeDigests: new ExeDigestCache() },
    );
    expect(plain.id).toMatchObject({
      exe: allowed,
      exeSha256: sha256File(SYSTEM_PYTHON),
      exePathVerified: true,
    });
    expect(executorMatches(byPath, plain.id)).toBe(true);
  });
});

describe("identifyPeer: bounded executable hashing", () => {
  it("an executable larger than MAX_EXE_BYTES is refused before a byte of it is hashed", async () => {
    const dir = join(srv.dir, "bin-big");
    await mkdir(dir, { recursive: true });
    const exe = join(dir, "py");
    await copyFile(SYSTEM_PYTHON, exe);
    await truncate(exe, MAX_EXE_BYTES + 1); // sparse: trailing zeros the ELF loader never maps
    const cache = new ExeDigestCache();
    const { client, conn } = await connectClient({ argv: [exe, "-c", PYTHON_CLIENT] });
    try {
      await expectFailure(
        identifyPeer(conn, { native, exeDigests: cache }),
        "verification_failed",
        "peer_exe_too_large",
      );
      expect(cache.misses).toBe(0);
    } finally {
      conn.destroy();
      await client.kill();
    }
  });

  it("an aborted signal stops the lookup (timeout), not the hash: it finishes into the cache", async () => {
    const dir = join(srv.dir, "bin-abort");
    await mkdir(dir, { recursive: true });
    const exe = join(dir, "py");
    await copyFile(SYSTEM_PYTHON, exe);
    const cache = new ExeDigestCache();
    const { client, conn } = await connectClient({ argv: [exe, "-c", PYTHON_CLIENT] });
    try {
      const signal = AbortSignal.abort();
      await expectFailure(identifyPeer(conn, { native, exeDigests: cache, signal }), "timeout");
      // The next lookup joins the hash still under way or finds it cached; either way the one
      // after it is a cache hit.
      const id = await identifyPeer(conn, { native, exeDigests: cache });
      expect(id.exeSha256).toBe(sha256File(SYSTEM_PYTHON));
      const hits = cache.hits;
      expect((await identifyPeer(conn, { native, exeDigests: cache })).exeSha256).toBe(id.exeSha256);
      expect(cache.hits).toBe(hits + 1);
      expect(cache.misses).toBe(1 + (hits === 0 ? 1 : 0));
    } finally {
      conn.destroy();
      await client.kill();
    }
  });
});

describe("identifyPeer: IMA digest hook", () => {
  it("passes the opened file to the hook and reports its answer", async () => {
    const seen: unknown[] = [];
    const { client, id } = await identified(
      { uid: NOBODY, gid: NOGROUP },
      {
        imaExeDigest: async (peer) => {
          seen.push(peer);
          return { algorithm: "sha256", digest: peer.exeSha256 };
        },
      },
    );
    expect(seen).toEqual([
      expect.objectContaining({ pid: client.pid, exe: id.exe, exeSha256: id.exeSha256 }),
    ]);
    expect(id.imaExeDigest).toEqual({ algorithm: "sha256", digest: id.exeSha256 });
  });

  it("a hook without a measurement leaves the field out; a failing hook fails the lookup", async () => {
    const none = await identified({}, { imaExeDigest: async () => undefined });
    expect("imaExeDigest" in none.id).toBe(false);
    const { client, conn } = await connectClient();
    try {
      const hook = async (): Promise<undefined> => {
        throw new ExecgateError("verification_failed", "IMA: no entry", { check: "ima_missing" });
      };
      await expectFailure(
        identifyPeer(conn, { native, imaExeDigest: hook }),
        "verification_failed",
        "ima_missing",
      );
    } finally {
      conn.destroy();
      await client.kill();
    }
  });
});

describe("identifyPeer: systemd unit from a real cgroup v2 hierarchy", () => {
  function cgroup2Mount(): string {
    const line = readFileSync("/proc/self/mounts", "utf8")
      .split("\n")
      .find((l) => l.split(" ")[2] === "cgroup2");
    const mount = line?.split(" ")[1];
    if (mount === undefined) throw new Error("no cgroup2 mount on this host");
    return mount;
  }

  /**
   * Creates `rel` under the cgroup v2 root (exempt from the no-internal-processes rule),
   * moves `pid` into it, and removes the directories in `cleanup` once the pid is gone.
   */
  async function placeIn(pid: number, rel: string): Promise<{ cleanup: () => Promise<void>; path: string }> {
    const created: string[] = [];
    let dir = cgroup2Mount();
    for (const part of rel.split("/")) {
      dir = join(dir, part);
      await mkdir(dir);
      created.push(dir);
    }
    await writeFile(join(dir, "cgroup.procs"), String(pid));
    return {
      path: `/${rel}`,
      cleanup: async () => {
        for (const d of created.reverse()) await rmdir(d).catch(() => undefined);
      },
    };
  }

  it.each([
    [
      "system service",
      "system.slice/execgate-peer-test-SUFFIX.service",
      { unit: "execgate-peer-test-SUFFIX.service" },
    ],
    [
      "user unit",
      "user.slice/user-65534.slice/user@65534.service/app.slice/execgate-peer-test-SUFFIX.service",
      { unit: "user@65534.service", userUnit: "execgate-peer-test-SUFFIX.service" },
    ],
  ])("%s", async (_what, relTemplate, expected) => {
    const suffix = `${process.pid}-${Math.floor(Math.random() * 1e9)}`;
    const rel = `execgate-test-${suffix}.slice/${relTemplate.replaceAll("SUFFIX", suffix)}`;
    const units = Object.fromEntries(
      Object.entries(expected).map(([k, v]) => [k, v.replaceAll("SUFFIX", suffix)]),
    );
    const { client, conn } = await connectClient({ uid: NOBODY, gid: NOGROUP });
    const placed = await placeIn(client.pid, rel);
    try {
      expect(await readFile(`/proc/${client.pid}/cgroup`, "utf8")).toContain(`0::${placed.path}\n`);
      const id = await identifyPeer(conn, { native });
      expect({ unit: id.unit, userUnit: id.userUnit }).toEqual({ userUnit: undefined, ...units });
    } finally {
      conn.destroy();
      await client.kill();
      await placed.cleanup();
    }
  });
});
