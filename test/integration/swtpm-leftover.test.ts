import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, expect, it } from "vitest";
import {
  dieWithParent,
  pdeathsigAvailable,
  processEnded,
  signalProcess,
  waitEnded,
} from "../../src/dev/pid.js";
import { stopLeftover } from "../../src/dev/swtpm.js";
import { until } from "../helpers/dev.js";
import { describeTpm } from "../helpers/hardware.js";
import { scratchDirs } from "../helpers/scratch.js";

const scratch = scratchDirs("execgate-leftover-");
const holders: ChildProcess[] = [];
afterAll(() => {
  for (const h of holders) h.kill("SIGKILL");
});

/** Resolves once `holder` runs `sleep` (the shell exec'd it, so no shell can reap its children). */
async function execdSleep(holder: ChildProcess): Promise<void> {
  await until("the shell to exec sleep", async () =>
    (await readFile(`/proc/${holder.pid}/cmdline`, "utf8").catch(() => "")).startsWith("sleep\0"),
  );
}

/** The state letter of /proc/PID/stat ("" once the PID is gone). */
async function procState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat.charAt(stat.lastIndexOf(")") + 2);
}

/**
 * A swtpm whose parent never reaps it (`sleep` exec'd over the shell that started it), as an
 * orphan is under an init that does not wait: once it ends it stays a zombie while `sleep` lives.
 */
async function unreapedSwtpm(dir: string): Promise<{ pid: number; pidFile: string; state: string }> {
  const state = join(dir, "state");
  const sock = join(dir, "swtpm.sock");
  const pidFile = join(dir, "swtpm.pid");
  await mkdir(state, { recursive: true });
  const holder = spawn(
    "/bin/sh",
    [
      "-c",
      '/usr/bin/swtpm socket --tpm2 --tpmstate "dir=$1" --server "type=unixio,path=$2" ' +
        '--ctrl "type=unixio,path=$2.ctrl" --flags not-need-init,startup-clear --pid "file=$3" & exec sleep 300',
      "sh",
      state,
      sock,
      pidFile,
    ],
    { stdio: "ignore" },
  );
  holders.push(holder);
  await execdSleep(holder);
  // swtpm writes its pid file in place: wait for a whole number, not just the file.
  const pidIn = async () => Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
  await until("the swtpm's pid file and socket", async () => (await pidIn()) > 1 && existsSync(sock));
  const pid = await pidIn();
  expect(await processEnded(pid)).toBe(false);
  return { pid, pidFile, state };
}

describeTpm("a swtpm left behind by a killed run: zombies and vanished processes count as gone", () => {
  it("signalProcess: a process already reaped (ESRCH) is reported gone, not thrown", async () => {
    const c = spawn("/bin/true", [], { stdio: "ignore" });
    await new Promise((r) => c.once("exit", r));
    expect(await processEnded(c.pid!)).toBe(true);
    expect(signalProcess(c.pid!, "SIGTERM")).toBe(false);
    expect(signalProcess(c.pid!, "SIGKILL")).toBe(false);
    expect(signalProcess(process.pid, "SIGCONT")).toBe(true);
  });

  it("processEnded: a zombie its parent never reaps has ended; a running process has not", async () => {
    // The child is killed only after the exec: a shell could otherwise reap it first.
    const holder = spawn("/bin/sh", ["-c", "sleep 300 & echo $!; exec sleep 300"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    holders.push(holder);
    const pid = Number(
      await new Promise<string>((r) => holder.stdout!.once("data", (d: Buffer) => r(d.toString()))),
    );
    await execdSleep(holder);
    expect(await processEnded(pid)).toBe(false);
    expect(signalProcess(pid, "SIGKILL")).toBe(true);
    await until("the child to become a zombie", async () => (await procState(pid)) === "Z");
    expect(await processEnded(pid)).toBe(true);
    expect(await waitEnded(pid, 0)).toBe(true);
    expect(await processEnded(holder.pid!)).toBe(false);
    expect(await waitEnded(holder.pid!, 0)).toBe(false);
  });

  it("stopLeftover: SIGTERM suffices for an orphan that then stays a zombie (no wait for a reap that never comes)", async () => {
    const t = await unreapedSwtpm(await scratch());
    expect(await stopLeftover(t.pidFile, t.state)).toBe("stopped");
    expect(await procState(t.pid)).toBe("Z");
    // Its zombie keeps the PID and the pid file names it: a later start finds nothing to stop.
    expect(await stopLeftover(t.pidFile, t.state)).toBe("none");
  });

  it("stopLeftover: a frozen leftover gets SIGKILL; a pid file naming another directory's swtpm, or a gone process, is left alone", async () => {
    const t = await unreapedSwtpm(await scratch());
    const other = join(await scratch(), "state");
    expect(await stopLeftover(t.pidFile, other)).toBe("none");
    expect(await processEnded(t.pid)).toBe(false);
    // Frozen only once swtpm handles SIGTERM itself: before that, SIGTERM's default action would
    // end even a stopped process, and stopLeftover would rightly say "stopped".
    await until("swtpm to handle SIGTERM", () => catchesSigterm(t.pid));
    signalProcess(t.pid, "SIGSTOP");
    expect(await stopLeftover(t.pidFile, t.state)).toBe("killed");
    expect(await processEnded(t.pid)).toBe(true);

    const gone = spawn("/bin/true", [], { stdio: "ignore" });
    await new Promise((r) => gone.once("exit", r));
    const pidFile = join(await scratch(), "swtpm.pid");
    await writeFile(pidFile, `${gone.pid}\n`);
    expect(await stopLeftover(pidFile, t.state)).toBe("none");
  });

  it("a Swtpm dies with the process that started it (kill -9), as the test helpers' and dev up's do", async () => {
    expect(await pdeathsigAvailable()).toBe(true);
    expect((await dieWithParent(["/usr/bin/swtpm"])).slice(0, 3)).toEqual([
      "/usr/bin/setpriv",
      "--pdeathsig",
      "KILL",
    ]);
    const dir = await scratch();
    const program = `import(${JSON.stringify(resolve("dist/src/dev/swtpm.js"))}).then(async (m) => {
      const t = await m.Swtpm.start({ dir: ${JSON.stringify(join(dir, "tpm"))} });
      process.stdout.write(t.pid + "\\n");
      setInterval(() => undefined, 1000);
    });`;
    const owner = spawn(process.execPath, ["-e", program], { stdio: ["ignore", "pipe", "inherit"] });
    holders.push(owner);
    const pid = Number(
      await new Promise<string>((r) => owner.stdout!.once("data", (d: Buffer) => r(d.toString()))),
    );
    expect(await processEnded(pid)).toBe(false);
    owner.kill("SIGKILL");
    await new Promise((r) => owner.once("exit", r));
    await until("the swtpm to end with its parent", () => processEnded(pid));
  });
});

/** True once the process has a handler for SIGTERM (proc(5) status SigCgt, bit 15 - 1). */
async function catchesSigterm(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return caught !== undefined && (BigInt(`0x${caught}`) & (1n << 14n)) !== 0n;
}
