import { ExecgateError } from "../core/errors.js";

/**
 * Pure parsers for the /proc files that identify a peer process. No I/O here; the text is
 * whatever the kernel (or a test) produced, and any violation becomes ExecgateError.
 */

/** /proc/<pid>/stat is one line of ~52 fields; comm is at most 64 bytes. Anything longer is not the kernel's. */
export const MAX_PROC_STAT_BYTES = 4096;
/** One line per cgroup hierarchy (≤ 16 v1 controllers + named + unified). */
export const MAX_CGROUP_LINES = 64;
export const MAX_CGROUP_BYTES = 64 * 1024;
export const MAX_FDINFO_BYTES = 16 * 1024;
/** systemd: UNIT_NAME_MAX is 256 including the NUL. */
export const MAX_UNIT_NAME = 255;

/** Field numbers as proc_pid_stat(5) counts them (1-based). */
const STAT_FIELD_STATE = 3;
const STAT_FIELD_STARTTIME = 22;

export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  readonly state: string;
  /** Field 22: the time the process started after boot, in clock ticks (USER_HZ). */
  readonly startTime: number;
}

function decimal(s: string, what: string): number {
  if (!/^[0-9]{1,20}$/.test(s)) throw new ExecgateError("malformed", `${what}: not a decimal number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new ExecgateError("limit_exceeded", `${what}: ${s} exceeds 2^53`);
  return n;
}

/**
 * proc_pid_stat(5): "pid (comm) state ppid …". comm is chosen by the process (prctl
 * PR_SET_NAME, or the executable's name) and may contain spaces and parentheses, so the
 * fields after it are found from the LAST ')' in the line.
 */
export function parseProcStat(text: string): ProcStat {
  if (text.length > MAX_PROC_STAT_BYTES) {
    throw new ExecgateError("limit_exceeded", `proc stat: ${text.length} bytes > ${MAX_PROC_STAT_BYTES}`);
  }
  const line = text.endsWith("\n") ? text.slice(0, -1) : text;
  const open = line.indexOf(" (");
  const close = line.lastIndexOf(")");
  if (open <= 0 || close < open + 1) throw new ExecgateError("malformed", "proc stat: no '(comm)' field");
  const pid = decimal(line.slice(0, open), "proc stat pid");
  const comm = line.slice(open + 2, close);
  const rest = line.slice(close + 1);
  if (!rest.startsWith(" ")) throw new ExecgateError("malformed", "proc stat: no space after comm");
  // fields[0] is field 3 (state)
  const fields = rest.slice(1).split(" ");
  const at = (field: number): string => {
    const v = fields[field - STAT_FIELD_STATE];
    if (v === undefined) throw new ExecgateError("truncated", `proc stat: no field ${field}`);
    return v;
  };
  const state = at(STAT_FIELD_STATE);
  if (!/^[A-Za-z]$/.test(state)) throw new ExecgateError("malformed", "proc stat: bad state field");
  const startTime = decimal(at(STAT_FIELD_STARTTIME), "proc stat starttime");
  if (pid <= 0) throw new ExecgateError("malformed", "proc stat: pid 0");
  return { pid, comm, state, startTime };
}

/** The systemd units a process belongs to, read from its cgroup path. */
export interface CgroupUnits {
  /** The cgroup path used (the unified "0::" line, else the hybrid "name=systemd" one). */
  readonly path: string;
  /**
   * The unit of the system manager (PID 1): "foo.service", "session-3.scope", or for
   * anything run by a user's manager "user@1000.service". Absent outside any unit.
   */
  readonly unit?: string;
  /**
   * The unit inside a user manager ("bar.service" for …/user@1000.service/app.slice/bar.service).
   * Kept apart from `unit` on purpose: any user can name a user unit like a system unit.
   */
  readonly userUnit?: string;
}

const UNIT_TYPES_WITH_PROCESSES = ["service", "scope", "socket", "mount", "swap"] as const;
const UNIT_NAME = /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.([a-z]+)$/;
const USER_MANAGER = /^user@[0-9]{1,10}\.service$/;

/** systemd.unit(5) name rules, limited to the unit types that can contain processes. */
export function isProcessUnitName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_UNIT_NAME) return false;
  const type = UNIT_NAME.exec(name)?.[2];
  return type !== undefined && (UNIT_TYPES_WITH_PROCESSES as readonly string[]).includes(type);
}

/**
 * systemd escapes a cgroup name that could clash with a kernel attribute file by
 * prefixing '_' (names starting with '_' or '.', "tasks", "<controller>.x", …); undo that.
 */
function cgroupUnescape(component: string): string {
  return component.startsWith("_") ? component.slice(1) : component;
}

/**
 * First unit below the leading slices of `components`, as systemd itself finds a unit from a
 * cgroup path: slices nest, the first non-slice component is the unit, and anything deeper is
 * inside that unit (a Delegate=yes unit may create sub-cgroups with any names, so deeper
 * components are never trusted as unit names).
 */
function unitAfterSlices(components: readonly string[]): { unit: string; index: number } | undefined {
  for (let i = 0; i < components.length; i++) {
    const c = cgroupUnescape(components[i] ?? "");
    if (c.endsWith(".slice") && isSliceName(c)) continue;
    return isProcessUnitName(c) ? { unit: c, index: i } : undefined;
  }
  return undefined;
}

function isSliceName(name: string): boolean {
  return name.length <= MAX_UNIT_NAME && /^[A-Za-z0-9:_.\\-]+\.slice$/.test(name);
}

/** The units named by a cgroup path such as "/system.slice/foo.service". */
export function unitsFromCgroupPath(path: string): Omit<CgroupUnits, "path"> {
  if (!path.startsWith("/")) throw new ExecgateError("malformed", "cgroup path is not absolute");
  const components = path.split("/").filter((c) => c.length > 0);
  // "/../.." appears when the process sits outside our cgroup namespace: no unit we can name.
  if (components.some((c) => c === ".." || c === ".")) return {};
  const first = unitAfterSlices(components);
  if (!first) return {};
  if (!USER_MANAGER.test(first.unit)) return { unit: first.unit };
  const inner = unitAfterSlices(components.slice(first.index + 1));
  return inner ? { unit: first.unit, userUnit: inner.unit } : { unit: first.unit };
}

/**
 * /proc/<pid>/cgroup (cgroups(7)): lines "hierarchy-ID:controller-list:cgroup-path". The
 * unified hierarchy's line is "0::/…". On a hybrid host the systemd hierarchy
 * "N:name=systemd:/…" carries the same unit path; on a pure cgroup v1 host without it there
 * is no unit (returns undefined).
 */
export function parseCgroup(text: string): CgroupUnits | undefined {
  if (text.length > MAX_CGROUP_BYTES) {
    throw new ExecgateError("limit_exceeded", `cgroup file: ${text.length} bytes > ${MAX_CGROUP_BYTES}`);
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length > MAX_CGROUP_LINES) {
    throw new ExecgateError("limit_exceeded", `cgroup file: more than ${MAX_CGROUP_LINES} lines`);
  }
  let unified: string | undefined;
  let named: string | undefined;
  for (const line of lines) {
    const a = line.indexOf(":");
    const b = a < 0 ? -1 : line.indexOf(":", a + 1);
    if (a <= 0 || b < 0) throw new ExecgateError("malformed", "cgroup file: line without two ':'");
    const id = line.slice(0, a);
    const controllers = line.slice(a + 1, b);
    const path = line.slice(b + 1); // paths may themselves contain ':'
    if (!/^[0-9]{1,10}$/.test(id)) throw new ExecgateError("malformed", "cgroup file: bad hierarchy id");
    if (!path.startsWith("/")) throw new ExecgateError("malformed", "cgroup file: path is not absolute");
    if (id === "0" && controllers === "") {
      if (unified !== undefined) throw new ExecgateError("malformed", "cgroup file: two unified lines");
      unified = path;
    } else if (controllers.split(",").includes("name=systemd")) {
      named = path;
    }
  }
  // Hybrid hosts keep the unified hierarchy empty ("0::/") and the units under name=systemd.
  const path = unified !== undefined && (unified !== "/" || named === undefined) ? unified : named;
  if (path === undefined) return undefined;
  return { path, ...unitsFromCgroupPath(path) };
}

/**
 * /proc/self/fdinfo/<pidfd> of a pidfd has "Pid:\t<n>": the process's PID in our namespace,
 * -1 once it has been reaped (0 if it is not visible in our namespace). Returns null for -1.
 */
export function parsePidfdInfoPid(text: string): number | null {
  if (text.length > MAX_FDINFO_BYTES) {
    throw new ExecgateError("limit_exceeded", `fdinfo: ${text.length} bytes > ${MAX_FDINFO_BYTES}`);
  }
  for (const line of text.split("\n")) {
    if (!line.startsWith("Pid:")) continue;
    const v = line.slice(4).trim();
    if (v === "-1") return null;
    return decimal(v, "fdinfo Pid");
  }
  throw new ExecgateError("malformed", "fdinfo: no Pid line (not a pidfd?)");
}
