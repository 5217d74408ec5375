import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CREDENTIALS_FALLBACK_DIR, readPin } from "../../src/hsm/pin.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir(), "pin-"));
  await writeFile(join(dir, "hsm-pin"), "1234\n");
  await writeFile(join(dir, "file-pin"), "5678");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("readPin", () => {
  it("a credential from $CREDENTIALS_DIRECTORY; a pin_file as is; one trailing newline dropped", async () => {
    expect(await readPin({ pinCredential: "hsm-pin" }, { CREDENTIALS_DIRECTORY: dir })).toBe("1234");
    expect(await readPin({ pinFile: join(dir, "file-pin") }, {})).toBe("5678");
  });

  it("outside systemd a credential is read from the directory the unit loads it from", async () => {
    expect(CREDENTIALS_FALLBACK_DIR).toBe("/etc/execgate/credentials");
    const e = await readPin({ pinCredential: "no-such-credential" }, {}).catch((err: unknown) => err);
    expect(e).toMatchObject({ code: "config_invalid" });
    expect((e as Error).message).toContain("/etc/execgate/credentials/no-such-credential: ENOENT");
  });

  it("no source, an empty PIN: config_invalid, without the PIN in the message", async () => {
    await expect(readPin({}, {})).rejects.toMatchObject({ code: "config_invalid" });
    await writeFile(join(dir, "empty"), "\n");
    await expect(readPin({ pinFile: join(dir, "empty") }, {})).rejects.toMatchObject({
      code: "config_invalid",
    });
  });
});
