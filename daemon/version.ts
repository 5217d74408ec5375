import { readFileSync } from "node:fs";

/** What `execgate --version` reports about the Node running it (`process.version`, `process.release`). */
export interface Runtime {
  readonly version: string;
  readonly lts: string | undefined;
}

/** The `--version` text: execgate's version on the first line (what scripts read), the runtime on the second. */
export function versionText(execgate: string, runtime: Runtime): string {
  const lts = runtime.lts ? `LTS ${runtime.lts}` : "not an LTS release";
  return `execgate ${execgate}\nruntime: node ${runtime.version} (${lts})\n`;
}

/** The package's version, from the package.json beside dist/ (or beside daemon/ in a checkout). */
export function packageVersion(): string {
  for (const rel of ["../../package.json", "../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === "execgate" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not this one
    }
  }
  return "unknown";
}
