import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { sha256 } from "../../src/lineage/hash.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("blob store", () => {
  it("stores by sha256, is idempotent, and re-checks digests on read", async () => {
    const dir = await mkdtemp(join(tmpdir(), "execgate-blobs-"));
    dirs.push(dir);
    const store = await BlobStore.open(join(dir, "blobs"));
    const data = new TextEncoder().encode("event log bytes");
    const d = await store.put(data);
    expect(d).toEqual(sha256(data));
    expect(await store.put(data)).toEqual(d);
    expect(await readdir(join(dir, "blobs"))).toEqual([toHex(d)]);
    expect(await store.get(d)).toEqual(data);
    await writeFile(store.pathOf(d), "tampered");
    await expect(store.get(d)).rejects.toMatchObject({ code: "verification_failed" });
    await expect(store.get(sha256(Uint8Array.of(1)))).rejects.toMatchObject({ code: "io_error" });
  });
});
