import { spawn } from "node:child_process";

/**
 * Runs `node ARGS` and reports its exit code, wall seconds, CPU seconds and peak RSS (the child
 * writes its own resource usage on exit through a preloaded hook, so no external tool is needed).
 */
const HOOK =
  "data:text/javascript,process.on('exit',()=>{const u=process.resourceUsage();" +
  "process.stderr.write('\\n@@usage '+JSON.stringify({rss:u.maxRSS,cpu:(u.userCPUTime+u.systemCPUTime)/1e6})+'\\n')})";

export interface ChildUsage {
  readonly code: number | null;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly maxRssMiB: number;
  readonly stdout: string;
}

export function measureNode(args: readonly string[]): Promise<ChildUsage> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ["--import", HOOK, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const m = /@@usage (\{.*\})/.exec(err);
      if (!m) return reject(new Error(`no usage from the child (exit ${code}): ${err.slice(-500)}`));
      const u = JSON.parse(m[1]!) as { rss: number; cpu: number };
      resolve({
        code,
        seconds: (performance.now() - t0) / 1000,
        cpuSeconds: u.cpu,
        maxRssMiB: u.rss / 1024,
        stdout: out,
      });
    });
  });
}
