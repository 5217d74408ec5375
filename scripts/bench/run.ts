import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { makeDirs } from "../../src/core/mkdirs.js";
import type { BenchRow, BenchSuite } from "./types.js";

/**
 * `npm run bench`: runs every suite, each number beside the baseline measured in the same run,
 * and writes bench/results/<time>.json and .md with the machine and tool versions.
 * BENCH_QUICK=1 uses small sizes; `npm run bench -- tpm lineage` runs only the named suites.
 *
 * Each suite runs in a process of its own: suites run one after another in one process measured
 * each other's leftovers (JIT state, heap): the IMA pipeline ran at ~310k entries/s alone and at
 * 175–260k after the tpm suite. The parent only collects the rows.
 */
const SUITES: Record<string, () => Promise<BenchSuite>> = {
  tpm: async () => (await import("./tpm.js")).suite,
  measure: async () => (await import("./measure.js")).suite,
  lineage: async () => (await import("./lineage.js")).suite,
  audit: async () => (await import("./audit.js")).suite,
  daemon: async () => (await import("./daemon.js")).suite,
  hsm: async () => (await import("./hsm.js")).suite,
  chaos: async () => (await import("./chaos.js")).suite,
  report: async () => (await import("./report.js")).suite,
};

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
      .split("\n")[0]!
      .trim();
  } catch {
    return "absent";
  }
}

function machine(): Record<string, string | number> {
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    swtpm: version("swtpm", ["--version"]),
    tpm2Tools: version("tpm2_quote", ["--version"]),
    softhsm2: version("softhsm2-util", ["--version"]),
  };
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  // Counts stay counts ("cycles 50", not "50.0").
  if (Number.isInteger(v) && Math.abs(v) < 1000) return String(v);
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return v.toPrecision(3);
}

function markdown(
  when: string,
  info: Record<string, string | number>,
  results: Record<string, BenchRow[]>,
): string {
  const out = [`# execgate benchmarks — ${when}`, "", "| machine | |", "|---|---|"];
  for (const [k, v] of Object.entries(info)) out.push(`| ${k} | ${v} |`);
  for (const [suite, rows] of Object.entries(results)) {
    out.push(
      "",
      `## ${suite}`,
      "",
      "| measurement | values | baseline (same run) | target | met |",
      "|---|---|---|---|---|",
    );
    for (const r of rows) {
      const values = Object.entries(r.values)
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join(", ");
      const met = r.met === undefined ? "" : r.met ? "yes" : "**no**";
      out.push(
        `| ${r.name}${r.note ? ` (${r.note})` : ""} | ${values} | ${r.baseline ?? ""} | ${r.target ?? ""} | ${met} |`,
      );
    }
  }
  return `${out.join("\n")}\n`;
}

/** Runs one suite in this process and writes its rows (or its failure) as JSON to `out`. */
async function runChild(name: string, out: string): Promise<void> {
  const load = SUITES[name];
  if (!load) throw new Error(`unknown suite ${name}; known: ${Object.keys(SUITES).join(", ")}`);
  const suite = await load();
  const quick = process.env.BENCH_QUICK === "1";
  const dir = await mkdtemp(join(tmpdir(), `execgate-bench-${name}-`));
  let rows: BenchRow[];
  let failed = false;
  try {
    rows = await suite.run({ dir, quick, log: (m) => process.stderr.write(`  ${name}: ${m}\n`) });
  } catch (e) {
    failed = true;
    process.stderr.write(
      `bench: ${name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    rows = [{ name: "suite failed", values: {}, note: e instanceof Error ? e.message : String(e) }];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await writeFile(out, JSON.stringify({ rows, failed }));
}

function runInChild(name: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [process.argv[1]!, "--child", name, out], { stdio: "inherit" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") return runChild(process.argv[3]!, process.argv[4]!);
  const wanted = process.argv.slice(2);
  const names = wanted.length > 0 ? wanted : Object.keys(SUITES);
  for (const name of names) {
    if (!SUITES[name]) throw new Error(`unknown suite ${name}; known: ${Object.keys(SUITES).join(", ")}`);
  }
  const quick = process.env.BENCH_QUICK === "1";
  const results: Record<string, BenchRow[]> = {};
  let failed = false;
  const scratch = await mkdtemp(join(tmpdir(), "execgate-bench-rows-"));
  try {
    for (const name of names) {
      process.stderr.write(`bench: ${name}\n`);
      const out = join(scratch, `${name}.json`);
      await runInChild(name, out);
      try {
        const r = JSON.parse(await readFile(out, "utf8")) as { rows: BenchRow[]; failed: boolean };
        results[name] = r.rows;
        failed ||= r.failed;
      } catch {
        failed = true;
        results[name] = [{ name: "suite failed", values: {}, note: "its process ended without results" }];
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const when = new Date().toISOString();
  const info = machine();
  const stamp = when.replace(/[:.]/g, "-");
  await makeDirs("bench/results");
  await writeFile(
    join("bench/results", `${stamp}.json`),
    `${JSON.stringify({ when, machine: info, quick, results }, null, 2)}\n`,
  );
  const md = markdown(when, info, results);
  await writeFile(join("bench/results", `${stamp}.md`), md);
  await writeFile(join("bench/results", "latest.md"), md);
  process.stdout.write(md);
  if (failed) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
