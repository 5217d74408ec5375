import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { scratchDirs } from "../helpers/scratch.js";

const tempDir = scratchDirs("execgate-outdir-");

/*
 * enroll --out and audit export --out answer alike: naming a path that cannot be the directory
 * is a usage error (exit 2) decided before any TPM or daemon is asked; a filesystem that refuses
 * is I/O (exit 3). No TPM or daemon runs here: each case must end before reaching one.
 */
describe("commands that write an --out directory", () => {
  it("enroll --out: an existing file or a file as parent is exit 2 naming it; a refusing filesystem is exit 3", async () => {
    const dir = await tempDir();
    const file = join(dir, "enrollment.json");
    await writeFile(file, "{}\n");
    const env = { TPM2TOOLS_TCTI: `swtpm:path=${dir}/absent.sock` };
    const existing = await execgate(["enroll", "--out", file], env);
    expect(existing.code).toBe(2);
    expect(existing.stderr).toContain(`--out ${file} is an existing file; --out names a directory`);
    const under = await execgate(["enroll", "--out", join(file, "sub")], env);
    expect(under.code).toBe(2);
    expect(under.stderr).toContain(`cannot create --out ${join(file, "sub")}: ENOTDIR`);
    // sysfs refuses mkdir (EPERM as root, EACCES otherwise): I/O, not the operator's spelling.
    const refused = await execgate(["enroll", "--out", "/sys/execgate-out-test"], env);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/io_error: cannot create --out \/sys\/execgate-out-test: E(PERM|ACCES)/);
  });

  it("audit export --out: an existing path is exit 2 before the daemon is asked; no daemon is exit 3", async () => {
    const dir = await tempDir();
    const env = { EXECGATE_SOCKET: join(dir, "absent.sock") };
    const existingDir = join(dir, "bundle");
    await mkdir(existingDir);
    await writeFile(join(dir, "file"), "x");
    for (const out of [existingDir, join(dir, "file")]) {
      const r = await execgate(["audit", "export", "--out", out], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--out ${out} already exists`);
    }
    const underFile = await execgate(["audit", "export", "--out", join(dir, "file", "b")], env);
    expect(underFile.code).toBe(2);
    const fresh = await execgate(["audit", "export", "--out", join(dir, "new")], env);
    expect(fresh.code).toBe(3);
    expect(await readdir(dir)).toEqual(["bundle", "file"]);
  });
});
