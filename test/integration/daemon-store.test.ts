import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { StartupError } from "../../daemon/start/refusal.js";
import { readSettings, type Settings } from "../../daemon/start/settings.js";
import { openStore, type Store } from "../../daemon/start/store.js";
import { openTrustRoots, type TrustRoots } from "../../daemon/start/trust-roots.js";
import { runStopSteps } from "../../daemon/stop.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { DaemonMetrics } from "../../src/metrics/daemon-metrics.js";
import { enroll } from "../../src/tpm/enroll.js";
import { lineageEntries } from "../helpers/daemon.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";
import { scratchDirs } from "../helpers/scratch.js";

// The daemon's first stages in process on swtpm: settings, trust roots, then the store, which
// records the start; a refusal once the lineage is open records daemon_stop with its reason.

const scratch = scratchDirs("execgate-daemon-store-");
const log = pino({ level: "silent" });

describeTpm("daemon start: the store stage", () => {
  let tpm: Swtpm;
  let settings: Settings;
  let roots: TrustRoots;
  let lineageDir: string;
  beforeAll(async () => {
    tpm = await startSwtpm();
    await enroll(tpm.runner);
    const dir = await scratch();
    lineageDir = join(dir, "lineage");
    await writeFile(join(dir, "boot_id"), "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
    await writeFile(
      join(dir, "policy.toml"),
      '[[executors]]\nname = "t"\nuids = [0]\nscopes = ["dev"]\n[scopes.dev]\nttl_s = 60\n',
    );
    const config = join(dir, "execgate.toml");
    await writeFile(
      config,
      [
        "[daemon]",
        `socket = ${JSON.stringify(join(dir, "d.sock"))}`,
        `state_dir = ${JSON.stringify(dir)}`,
        `policy = ${JSON.stringify(join(dir, "policy.toml"))}`,
        `boot_id_path = ${JSON.stringify(join(dir, "boot_id"))}`,
        "[tpm]",
        `tcti = ${JSON.stringify(tpm.tcti)}`,
        "[lineage]",
        `dir = ${JSON.stringify(lineageDir)}`,
        "",
      ].join("\n"),
    );
    settings = await readSettings(config, log);
    roots = await openTrustRoots(settings.config, new DaemonMetrics(Date.now()));
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  /** The closed lineage's entry types, with the reasons of daemon_start and daemon_stop. */
  const story = async () =>
    (await lineageEntries(lineageDir)).map((e) =>
      e.type === "daemon_stop" || e.type === "daemon_start" ? `${e.type}: ${e.body.reason}` : e.type,
    );
  const stop = (store: Store, reason: string) =>
    runStopSteps([...store.closeSteps(reason), ["disk", () => store.disk.stop()]], log);

  it("records daemon_start then policy_loaded, with the policy's files stored; its stop records daemon_stop", async () => {
    const store = await openStore(settings, roots);
    expect(store.lineage.size).toBe(2);
    expect(await store.blobs.has(settings.policy.current.digest)).toBe(true);
    expect(await stop(store, "SIGTERM")).toBe(0);
    expect(await story()).toEqual(["daemon_start: start", "policy_loaded", "daemon_stop: SIGTERM"]);
  });

  it("a blob store that cannot open once the lineage is: exit 3, and the refusal is daemon_stop's reason", async () => {
    const blobs = join(lineageDir, "blobs");
    await rm(blobs, { recursive: true, force: true });
    await writeFile(blobs, "not a directory");
    const refused = await openStore(settings, roots).catch((e: unknown) => e);
    await rm(blobs);
    expect(refused).toBeInstanceOf(StartupError);
    expect(refused).toMatchObject({
      exitCode: 3,
      message: expect.stringMatching(/^refusing to start: lineage store /),
    });
    // Nothing of the refused start but why it stopped: the lineage is closed (its lock released).
    expect((await story()).slice(3)).toEqual([`daemon_stop: ${(refused as StartupError).message}`]);
  });
});
