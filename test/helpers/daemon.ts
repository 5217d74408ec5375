import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ExecgateClient, ExecgateDenied } from "../../src/client/index.js";
import type { DenialReason } from "../../src/core/denial.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { goldenFromPcrs } from "../../src/policy/integrity-schema.js";
import { enroll } from "../../src/tpm/enroll.js";
import { DEFAULT_PCR_SELECTION, pcrRead } from "../../src/tpm/ops/pcr.js";
import { startSwtpm } from "./hardware.js";

/**
 * The daemon as a real process (`node dist/daemon/cli.js daemon --config …`) on a fresh swtpm,
 * with a policy whose golden PCR values are the swtpm's current ones. Tests talk to its socket.
 */
export interface TestDaemon {
  readonly dir: string;
  readonly tpm: Swtpm;
  readonly socket: string;
  readonly config: string;
  readonly policy: string;
  readonly bootIdFile: string;
  readonly lineageDir: string;
  readonly env: NodeJS.ProcessEnv;
  stderr(): string;
  /** The process spawned by start() (the wrapper, when `wrap` is used). */
  child(): ChildProcess | undefined;
  client(): Promise<ExecgateClient>;
  /** Starts the daemon process (again). */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash: no daemon_stop entry, no final checkpoint, the lock file left behind). */
  crash(): Promise<void>;
  /** Stops the daemon and the swtpm. */
  dispose(): Promise<void>;
}

export interface TestDaemonOptions {
  /** Extra TOML appended to the policy (scopes etc.); the executor `tester` (uid 0) gets `scopes`. `$DIR` is the daemon's directory. */
  readonly scopes?: readonly string[];
  readonly policyExtra?: string;
  /** Extra lines per config section (`$DIR` is the daemon's directory). */
  readonly config?: Readonly<Record<string, readonly string[]>>;
  /** Put the lineage directory here instead of DIR/state/lineage (e.g. a small tmpfs). */
  readonly lineageDir?: string;
  /** Golden PCR values from the TPM's state after `prepare` (default true). */
  readonly golden?: boolean;
  /** Runs on the enrolled TPM before the policy is written and the daemon starts. */
  readonly prepare?: (tpm: Swtpm, dir: string) => Promise<void>;
  /** Wraps the daemon's argv (e.g. in systemd-socket-activate or strace); default: run it as is. */
  readonly wrap?: (argv: readonly string[], d: TestDaemon) => string[];
  /** Extra environment for the daemon process (default: this process's environment only). */
  readonly daemonEnv?: Readonly<Record<string, string>>;
  /** Runs once after the spawn, while start() waits for daemon_started (e.g. a connection that triggers socket activation). */
  readonly onSpawn?: (d: TestDaemon) => Promise<void>;
}

export async function startTestDaemon(opts: TestDaemonOptions = {}): Promise<TestDaemon> {
  const tpm = await startSwtpm();
  const dir = tpm.paths.state.replace(/\/state$/, "");
  await enroll(tpm.runner);
  await opts.prepare?.(tpm, dir);
  const pcrs = pcrHexFromTpm(await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION));
  const socket = join(dir, "d.sock");
  const bootIdFile = join(dir, "boot_id");
  const lineageDir = opts.lineageDir ?? join(dir, "state", "lineage");
  await writeFile(bootIdFile, "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
  const policy = join(dir, "policy.toml");
  await writeFile(
    policy,
    [
      "[[executors]]",
      'name = "tester"',
      "uids = [0]",
      `scopes = ${JSON.stringify(opts.scopes ?? ["dev"])}`,
      "",
      "[scopes.dev]",
      "ttl_s = 60",
      "",
      (opts.policyExtra ?? "").replaceAll("$DIR", dir),
      opts.golden === false ? "" : goldenFromPcrs(pcrs as Record<string, Record<string, string>>),
    ].join("\n"),
  );
  const sections: Record<string, string[]> = {
    daemon: [
      `socket = ${JSON.stringify(socket)}`,
      'socket_mode = "0666"',
      `state_dir = ${JSON.stringify(join(dir, "state"))}`,
      `policy = ${JSON.stringify(policy)}`,
      `boot_id_path = ${JSON.stringify(bootIdFile)}`,
      'log_level = "debug"',
    ],
    tpm: [`tcti = ${JSON.stringify(tpm.tcti)}`, "timeout_ms = 5000"],
    attest: ["epoch_ms = 200", "idle_epoch_ms = 1000", "max_evidence_age_ms = 3000"],
    lineage: [`dir = ${JSON.stringify(lineageDir)}`, "checkpoint_ms = 200"],
  };
  for (const [k, lines] of Object.entries(opts.config ?? {})) {
    const replaced = new Set(lines.map((l) => l.split("=")[0]!.trim()));
    sections[k] = [
      ...(sections[k] ?? []).filter((l) => !replaced.has(l.split("=")[0]!.trim())),
      ...lines.map((l) => l.replaceAll("$DIR", dir)),
    ];
  }
  const config = join(dir, "execgate.toml");
  await writeFile(
    config,
    Object.entries(sections)
      .map(([k, v]) => `[${k}]\n${v.join("\n")}\n`)
      .join("\n"),
  );
  await mkdir(join(dir, "state"), { recursive: true });

  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let err = "";
  const env = { EXECGATE_SOCKET: socket, EXECGATE_CONFIG: config, TPM2TOOLS_TCTI: tpm.tcti };

  const d: TestDaemon = {
    dir,
    tpm,
    socket,
    config,
    policy,
    bootIdFile,
    lineageDir,
    env,
    stderr: () => err,
    child: () => child,
    client: () => ExecgateClient.connect(socket, { timeoutMs: 20_000 }),
    async start() {
      const argv = [process.execPath, resolve("dist/daemon/cli.js"), "daemon", "--config", config];
      const [cmd, ...args] = opts.wrap ? opts.wrap(argv, d) : argv;
      // Only this start's output counts (stderr() keeps every run's).
      const from = err.length;
      const c = spawn(cmd!, args, {
        stdio: ["ignore", "ignore", "pipe"],
        ...(opts.daemonEnv ? { env: { ...process.env, ...opts.daemonEnv } } : {}),
      });
      child = c;
      c.stderr!.on("data", (b: Buffer) => {
        err += b.toString();
      });
      exited = new Promise((r) => c.once("exit", (code) => r(code)));
      const spawned = opts.onSpawn?.(d);
      const end = Date.now() + 30_000;
      while (!err.slice(from).includes("daemon_started")) {
        if (c.exitCode !== null || Date.now() > end) throw new Error(`daemon did not start:\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await spawned;
    },
    async stop() {
      if (!child || child.exitCode !== null) return child?.exitCode ?? null;
      child.kill("SIGTERM");
      return exited;
    },
    async crash() {
      if (!child || child.exitCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
    async dispose() {
      await d.stop();
      tpm.resume();
      await tpm.stop();
    },
  };
  await d.start();
  if (!existsSync(socket)) throw new Error("daemon socket missing");
  return d;
}

/** Polls `f` until it returns true (no wall-clock assertion: only a generous bound). */
export async function eventually(what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every entry of a stopped daemon's lineage, decoded. */
export async function lineageEntries(dir: string) {
  const { Journal } = await import("../../src/lineage/journal.js");
  const { decodeEntry } = await import("../../src/lineage/entry.js");
  const j = await Journal.open({ dir });
  try {
    return (await j.readRange(0, j.size)).map((b) => decodeEntry(b));
  } finally {
    await j.close();
  }
}

/** The denial reasons recorded in decision entries, in order. */
export async function recordedDenials(dir: string): Promise<string[]> {
  return (await lineageEntries(dir)).flatMap((e) =>
    e.type === "decision" && !e.body.allow && e.body.reason ? [e.body.reason] : [],
  );
}

/** (size → root) of every checkpoint in a lineage directory's checkpoints.log (signatures not checked here). */
export async function signedCheckpointRoots(dir: string): Promise<Map<number, Uint8Array>> {
  const { readFile } = await import("node:fs/promises");
  const { parseCheckpointLog } = await import("../../src/lineage/bundle-files.js");
  const { parseNote } = await import("../../src/lineage/note.js");
  const { parseCheckpoint } = await import("../../src/lineage/checkpoint.js");
  const out = new Map<number, Uint8Array>();
  for (const r of parseCheckpointLog(new Uint8Array(await readFile(join(dir, "checkpoints.log")))).records) {
    if (r.kind !== "checkpoint") continue;
    const cp = parseCheckpoint(parseNote(r.note).text);
    out.set(cp.size, cp.rootHash);
  }
  return out;
}

/** The outcome of one token request for `scope`: "allow" or the denial reason. */
export async function tokenOutcome(c: ExecgateClient, scope = "dev"): Promise<"allow" | DenialReason> {
  try {
    await c.requestToken({ scope, argv: ["/bin/true"] });
    return "allow";
  } catch (e) {
    if (e instanceof ExecgateDenied) return e.reason;
    throw e;
  }
}
