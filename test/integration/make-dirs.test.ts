import { mkdir, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makeDirs } from "../../src/core/mkdirs.js";
import { Journal } from "../../src/lineage/journal.js";
import { execgate } from "../helpers/cli.js";
import { scratchDirs } from "../helpers/scratch.js";

const tempDir = scratchDirs("execgate-mkdirs-");

/*
 * Node's mkdir(path, { recursive: true }) never settles when a parent exists but cannot hold the
 * child (a dangling symlink, /proc): each case here hung (test timeout) before makeDirs.
 */
describe("makeDirs", () => {
  it("creates missing parents, with the mode, and accepts an existing directory", async () => {
    const dir = await tempDir();
    const deep = join(dir, "a", "b", "c");
    await makeDirs(deep, 0o750);
    expect((await stat(deep)).isDirectory()).toBe(true);
    expect((await stat(join(dir, "a"))).mode & 0o777).toBe(0o750);
    await makeDirs(deep, 0o750);
  });

  it("fails instead of spinning under a dangling symlink and under /proc", async () => {
    const dir = await tempDir();
    await symlink(join(dir, "gone"), join(dir, "dangling"));
    await expect(makeDirs(join(dir, "dangling", "x", "y"))).rejects.toMatchObject({ code: "ENOENT" });
    await expect(makeDirs(join(dir, "dangling"))).rejects.toMatchObject({ code: "ENOENT" });
    await expect(makeDirs("/proc/execgate-nope/x")).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("fails with ENOTDIR where a file stands in the path", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "file"), "");
    await expect(makeDirs(join(dir, "file"))).rejects.toMatchObject({ code: "ENOTDIR" });
    await expect(makeDirs(join(dir, "file", "x"))).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  it("a lineage directory under a dangling symlink is refused (io_error), not a hung start", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "var"));
    await symlink(join(dir, "unmounted"), join(dir, "var", "lib"));
    await expect(Journal.open({ dir: join(dir, "var", "lib", "lineage") })).rejects.toMatchObject({
      code: "io_error",
    });
  });

  it("enroll --out under /proc is a usage error naming the directory (exit 2)", async () => {
    const r = await execgate(["enroll", "--out", "/proc/execgate-nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot create --out \/proc\/execgate-nope/);
  });
});
