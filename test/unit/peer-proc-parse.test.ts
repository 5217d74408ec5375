import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import {
  isProcessUnitName,
  MAX_PROC_STAT_BYTES,
  parseCgroup,
  parsePidfdInfoPid,
  parseProcStat,
  unitsFromCgroupPath,
} from "../../src/peer/proc-parse.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "peer");
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), "utf8");

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof ExecgateError) return e.code;
    throw e;
  }
  return "no error";
}

describe("parseProcStat (proc_pid_stat(5))", () => {
  it.each([
    ["stat-cat.txt", 16353, "cat", 91628],
    ["stat-comm-parens.txt", 16350, "a) R 1 (b) 2", 91626],
    ["stat-comm-newline.txt", 16351, "x\ny) S 9 ", 91626],
    ["stat-comm-space-paren.txt", 16352, " ) ", 91627],
  ])("%s: fields after the last ')'", (file, pid, comm, startTime) => {
    const st = parseProcStat(fixture(file));
    expect(st).toEqual({ pid, comm, state: expect.stringMatching(/^[A-Z]$/), startTime });
  });

  it("reads field 22 exactly", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = "S";
    const st = parseProcStat(`42 (x) ${fields.join(" ")}\n`);
    expect(st.startTime).toBe(22);
  });

  it.each([
    ["", "malformed"],
    ["42", "malformed"],
    ["42 (x", "malformed"],
    ["(x) S 1", "malformed"],
    ["-1 (x) S", "malformed"],
    ["0 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19", "malformed"],
    ["42 (x)S 1", "malformed"],
    ["42 (x) S 1 2 3", "truncated"],
    ["42 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19", "malformed"],
    ["42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -19", "malformed"],
    ["42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99999999999999999999", "limit_exceeded"],
    ["42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1e3", "malformed"],
    [`42 (${"x".repeat(MAX_PROC_STAT_BYTES)}) S`, "limit_exceeded"],
  ])("rejects %j with %s", (text, expected) => {
    expect(code(() => parseProcStat(text))).toBe(expected);
  });
});

describe("parseCgroup (cgroups(7)) and systemd units", () => {
  it("this host (hybrid, everything at /): no unit", () => {
    expect(parseCgroup(fixture("cgroup-hybrid-root.txt"))).toEqual({ path: "/" });
  });

  it.each([
    ["0::/system.slice/nginx.service\n", { unit: "nginx.service" }],
    ["0::/system.slice/system-getty.slice/getty@tty1.service\n", { unit: "getty@tty1.service" }],
    ["0::/system.slice/execgate.service/worker\n", { unit: "execgate.service" }],
    // a Delegate=yes unit may create sub-cgroups with any name: they are not units
    ["0::/system.slice/ci-runner.service/payload.service\n", { unit: "ci-runner.service" }],
    ["0::/user.slice/user-1000.slice/session-3.scope\n", { unit: "session-3.scope" }],
    [
      "0::/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service\n",
      { unit: "user@1000.service", userUnit: "nginx.service" },
    ],
    [
      "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n",
      { unit: "user@1000.service", userUnit: "init.scope" },
    ],
    ["0::/user.slice/user-1000.slice/user@1000.service\n", { unit: "user@1000.service" }],
    ["0::/init.scope\n", { unit: "init.scope" }],
    ["0::/system.slice/_cgroup.service\n", { unit: "cgroup.service" }],
    ["0::/system.slice\n", {}],
    ["0::/\n", {}],
    ["0::/../../system.slice/foo.service\n", {}],
    ["0::/machine.slice/libpod-abc.scope/container/x.service\n", { unit: "libpod-abc.scope" }],
    ["0::/system.slice/not a unit\n", {}],
    ["0::/system.slice/foo.timer\n", {}],
    ["0::/docker/0123abcd\n", {}],
  ])("%j", (text, units) => {
    const path = text.slice(3, -1);
    expect(parseCgroup(text)).toEqual({ path, ...units });
  });

  it("hybrid host: the name=systemd hierarchy carries the unit when the unified one is empty", () => {
    const text = [
      "12:pids:/system.slice/cron.service",
      "2:cpu,cpuacct:/",
      "1:name=systemd:/system.slice/cron.service",
      "0::/",
      "",
    ].join("\n");
    expect(parseCgroup(text)).toEqual({ path: "/system.slice/cron.service", unit: "cron.service" });
  });

  it("hybrid host with systemd in both: the unified line wins", () => {
    const text = "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n";
    expect(parseCgroup(text)?.unit).toBe("b.service");
  });

  it("pure cgroup v1 without name=systemd: no unit at all", () => {
    expect(parseCgroup("3:memory:/foo\n2:cpu:/\n")).toBeUndefined();
  });

  it("paths may contain ':'", () => {
    expect(parseCgroup("0::/system.slice/a:b.service\n")).toEqual({
      path: "/system.slice/a:b.service",
      unit: "a:b.service",
    });
  });

  it.each([
    ["garbage\n", "malformed"],
    ["0:/x\n", "malformed"],
    ["x::/\n", "malformed"],
    ["0::relative\n", "malformed"],
    ["0::/a\n0::/b\n", "malformed"],
    [`${"1:cpu:/\n".repeat(65)}`, "limit_exceeded"],
  ])("rejects %j with %s", (text, expected) => {
    expect(code(() => parseCgroup(text))).toBe(expected);
  });

  it("unit names follow systemd.unit(5), for unit types that hold processes", () => {
    expect(isProcessUnitName("a.service")).toBe(true);
    expect(isProcessUnitName("a@b.service")).toBe(true);
    expect(isProcessUnitName("a.slice")).toBe(false);
    expect(isProcessUnitName(".service")).toBe(false);
    expect(isProcessUnitName(`${"a".repeat(248)}.service`)).toBe(false);
    expect(isProcessUnitName("a/b.service")).toBe(false);
    expect(unitsFromCgroupPath("/a.slice/b.slice/c.socket")).toEqual({ unit: "c.socket" });
  });
});

describe("parsePidfdInfoPid", () => {
  it("reads Pid, null once reaped", () => {
    expect(
      parsePidfdInfoPid("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\nPid:\t1234\nNSpid:\t1234\n"),
    ).toBe(1234);
    expect(parsePidfdInfoPid("pos:\t0\nPid:\t-1\nNSpid:\t-1\n")).toBeNull();
  });
  it("rejects a non-pidfd fdinfo", () => {
    expect(code(() => parsePidfdInfoPid("pos:\t0\nflags:\t0100000\n"))).toBe("malformed");
    expect(code(() => parsePidfdInfoPid("Pid:\tx\n"))).toBe("malformed");
  });
});
