import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { loadNative, loadNativeFrom, nativeAddonCandidates } from "../../src/native/index.js";

/** The loader fails closed, with a message that says how to fix it. */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "native-loader-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function failure(f: () => unknown): ExecgateError {
  try {
    f();
  } catch (e) {
    if (e instanceof ExecgateError) return e;
    throw e;
  }
  throw new Error("expected an ExecgateError");
}

describe("loadNative", () => {
  it("loads the built addon from native/build/Release", () => {
    expect(nativeAddonCandidates()[0]).toMatch(/\/native\/build\/Release\/execgate_native\.node$/);
    const n = loadNative();
    expect(loadNative()).toBe(n);
    expect(Object.keys(n).sort()).toEqual([
      "closeFd",
      "lockExclusive",
      "peerCred",
      "peerPidfd",
      "pidfdIsAlive",
      "sdNotifyTo",
    ]);
  });

  it("candidates cover the source tree and the built dist/ tree", () => {
    const c = nativeAddonCandidates("file:///opt/execgate/dist/src/native/index.js");
    expect(c).toEqual([
      "/opt/execgate/dist/native/build/Release/execgate_native.node",
      "/opt/execgate/native/build/Release/execgate_native.node",
    ]);
  });

  it("missing addon: unsupported, telling the operator to run scripts/setup.sh", () => {
    const e = failure(() => loadNativeFrom([join(dir, "absent.node")]));
    expect(e.code).toBe("unsupported");
    expect(e.message).toContain("run scripts/setup.sh to build native/");
  });

  it("a file that is not an addon: unsupported, never a fallback", async () => {
    const bogus = join(dir, "bogus.node");
    await writeFile(bogus, "not an ELF object");
    const e = failure(() => loadNativeFrom([bogus]));
    expect(e.code).toBe("unsupported");
    expect(e.message).toContain("failed to load");
  });

  it("a stale addon missing functions: unsupported, naming them", async () => {
    const stale = join(dir, "stale.cjs");
    await writeFile(stale, "module.exports = { peerCred() {}, closeFd() {} };");
    const e = failure(() => loadNativeFrom([stale]));
    expect(e.code).toBe("unsupported");
    expect(e.message).toContain("peerPidfd, pidfdIsAlive, sdNotify");
  });
});
