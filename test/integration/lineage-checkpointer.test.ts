import { appendFile, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { type CborValue, encode } from "../../src/cbor/index.js";
import { openCheckpoint } from "../../src/lineage/checkpoint.js";
import { Checkpointer } from "../../src/lineage/checkpointer.js";
import { type Entry, makeEntry } from "../../src/lineage/entry.js";
import { Journal } from "../../src/lineage/journal.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { verifierFromSigner } from "../../src/lineage/note.js";
import { frameRecord } from "../../src/lineage/record.js";
import { type NoteSigner, softwareEcdsaP256Signer, softwareEd25519Signer } from "../../src/lineage/signer.js";
import { scratchDirs } from "../helpers/scratch.js";

const ORIGIN = "execgate.test/lineage";
const tempDir = scratchDirs("execgate-ckpt-");

const entry = (i: number): Entry => makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `r${i}` });

class FakeClock {
  t = 0;
  now = (): number => this.t;
}

describe("checkpointer", () => {
  it("signs when the tree grew and checkpointMs passed; the notes verify with the vkey", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN);
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now, checkpointMs: 1000 });
    expect(await lin.checkpointTick()).toBeUndefined(); // empty tree: nothing to sign
    await lin.add([entry(0)]);
    const first = await lin.checkpointTick();
    expect(first?.checkpoint.size).toBe(1);
    await lin.add([entry(1)]);
    clock.t = 999;
    expect(await lin.checkpointTick()).toBeUndefined(); // too soon
    clock.t = 1000;
    const second = await lin.checkpointTick();
    expect(second?.checkpoint.size).toBe(2);
    expect(await lin.checkpointTick()).toBeUndefined(); // tree did not grow
    const v = verifierFromSigner(signer);
    const opened = openCheckpoint(second!.note, ORIGIN, v);
    expect(opened.checkpoint.rootHash).toEqual(lin.rootAt(2));
    await lin.close();
  });

  it("start(): a signer that fails goes to onError, each checkpoint signed after it to onSigned", async () => {
    const dir = await tempDir();
    const base = softwareEd25519Signer(ORIGIN);
    let down = true;
    const flaky: NoteSigner = {
      ...base,
      sign: (msg) => (down ? Promise.reject(new Error("TPM gone")) : base.sign(msg)),
    };
    const lin = await openLineage({ dir, origin: ORIGIN, signer: flaky, now: Date.now, checkpointMs: 40 });
    const errors: string[] = [];
    const signed: number[] = [];
    lin.startCheckpoints(
      (e) => void errors.push(String(e)),
      (cp) => void signed.push(cp.checkpoint.size),
    );
    await lin.add([entry(0)]);
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0), { timeout: 10_000 });
    expect(signed).toEqual([]);
    down = false;
    await vi.waitFor(() => expect(signed).toEqual([1]), { timeout: 10_000 });
    expect(errors.every((e) => e.includes("TPM gone"))).toBe(true);
    await lin.close();
  });

  it("close() signs a checkpoint covering the last entry even when a periodic signature is in flight", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const base = softwareEd25519Signer(ORIGIN);
    let release: () => void = () => undefined;
    let held = true;
    const slow: NoteSigner = {
      ...base,
      sign: async (msg) => {
        if (held) {
          held = false;
          await new Promise<void>((r) => {
            release = r;
          });
        }
        return base.sign(msg);
      },
    };
    const lin = await openLineage({ dir, origin: ORIGIN, signer: slow, now: clock.now, checkpointMs: 1000 });
    await lin.add([entry(0)]);
    const periodic = lin.checkpointTick(); // snapshots size 1, then waits in the signer
    await vi.waitFor(() => expect(held).toBe(false));
    await lin.add([entry(1)]); // e.g. daemon_stop, after the snapshot
    const closing = lin.close();
    release();
    expect((await periodic)?.checkpoint.size).toBe(1);
    expect((await closing)?.checkpoint.size).toBe(2);
  });

  it("at most one signature in flight: concurrent ticks share it", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const base = softwareEcdsaP256Signer(ORIGIN);
    let calls = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow: NoteSigner = {
      name: base.name,
      algorithm: base.algorithm,
      publicKey: base.publicKey,
      async sign(m) {
        calls += 1;
        await gate;
        return base.sign(m);
      },
    };
    const lin = await openLineage({ dir, origin: ORIGIN, signer: slow, now: clock.now });
    await lin.add([entry(0)]);
    const a = lin.checkpointTick();
    await lin.add([entry(1)]);
    clock.t = 5000;
    const b = lin.checkpointTick();
    expect(b).toBe(a);
    release();
    expect((await a)?.checkpoint.size).toBe(1);
    expect(calls).toBe(1);
    clock.t = 6000;
    expect((await lin.checkpointTick())?.checkpoint.size).toBe(2);
    await lin.close();
  });

  it("records the intent durably before signing; a crash in the signer never yields two roots per size", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const good = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(1));
    const failing: NoteSigner = { ...good, sign: () => Promise.reject(new Error("TPM gone")) };
    const lin = await openLineage({ dir, origin: ORIGIN, signer: failing, now: clock.now });
    await Promise.all([0, 1, 2].map((i) => lin.add([entry(i)])));
    await expect(lin.checkpointTick()).rejects.toThrow("TPM gone");
    const log = await readFile(join(dir, "checkpoints.log"));
    expect(log.includes(Buffer.from("intent"))).toBe(true);
    expect(log.includes(Buffer.from("checkpoint"))).toBe(false);
    await lin.closeWithoutCheckpoint();

    const again = await openLineage({ dir, origin: ORIGIN, signer: good, now: clock.now });
    const cp = await again.checkpointTick();
    expect(cp?.checkpoint.size).toBe(3);
    await again.close();
  });

  it("refuses to open when the journal lost entries a checkpoint covers", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(2));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now });
    for (let i = 0; i < 5; i++) await lin.add([entry(i)]);
    await lin.close(); // signs size 5
    const seg = join(dir, "segments", (await readdir(join(dir, "segments")))[0]!);
    const size = (await readFile(seg)).length;
    await truncate(seg, size - 5); // the last entry becomes a torn tail and is cut
    await expect(openLineage({ dir, origin: ORIGIN, signer, now: clock.now })).rejects.toMatchObject({
      code: "config_invalid",
    });
  });

  it("refuses a checkpoint log whose last checkpoint does not verify with the signer's key", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const lin = await openLineage({
      dir,
      origin: ORIGIN,
      signer: softwareEd25519Signer(ORIGIN),
      now: clock.now,
    });
    await lin.add([entry(0)]);
    await lin.close();
    const other = softwareEd25519Signer(ORIGIN);
    await expect(openLineage({ dir, origin: ORIGIN, signer: other, now: clock.now })).rejects.toMatchObject({
      code: "verification_failed",
    });
  });

  it("tolerates a torn record at the end of checkpoints.log", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(3));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now });
    await lin.add([entry(0)]);
    await lin.close();
    await appendFile(join(dir, "checkpoints.log"), Buffer.from([0, 0, 0, 40, 1, 2]));
    const again = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now });
    expect(again.latestCheckpoint()?.checkpoint.size).toBe(1);
    await again.add([entry(1)]);
    expect((await again.checkpointTick())?.checkpoint.size).toBe(2);
    await again.close();
  });

  it("refuses, and cuts nothing, when a bad record is not the last (damage, not a torn write)", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(3));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now, checkpointMs: 1 });
    for (let i = 0; i < 3; i++) {
      await lin.add([entry(i)]);
      clock.t += 10;
      await lin.checkpointTick();
    }
    await lin.close();
    await rm(join(dir, "resume")); // a scan from the beginning
    const path = join(dir, "checkpoints.log");
    const bytes = await readFile(path);
    bytes[20]! ^= 0x40; // inside the first record; intact signed records follow
    await writeFile(path, bytes);
    await expect(openLineage({ dir, origin: ORIGIN, signer, now: clock.now })).rejects.toMatchObject({
      code: "config_invalid",
      message: expect.stringMatching(/not a torn last record/),
    });
    expect((await readFile(path)).equals(bytes)).toBe(true);
  });

  it("does not sign when an entry on disk no longer matches its leaf hash", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(4));
    const journal = await Journal.open({ dir });
    const cp = await Checkpointer.open({ journal, origin: ORIGIN, signer, now: clock.now });
    await journal.add([entry(1)]);
    await journal.add([entry(2)]);
    // Swap the two records on disk: each CRC is valid, but the leaves are in the wrong place.
    const seg = join(dir, "segments", (await readdir(join(dir, "segments")))[0]!);
    const bytes = await readFile(seg);
    const body = bytes.subarray(16);
    const half = body.length / 2;
    const swapped = Buffer.concat([bytes.subarray(0, 16), body.subarray(half), body.subarray(0, half)]);
    await writeFile(seg, swapped);
    await expect(cp.tick()).rejects.toMatchObject({ code: "verification_failed" });
    await cp.close();
    await journal.close();
  });

  it("a failing signer is retried at the checkpoint cadence, not on every tick", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const good = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(5));
    let calls = 0;
    const flaky: NoteSigner = {
      ...good,
      sign: (m) => {
        calls += 1;
        return calls === 1 ? Promise.reject(new Error("TPM busy")) : good.sign(m);
      },
    };
    const lin = await openLineage({ dir, origin: ORIGIN, signer: flaky, now: clock.now, checkpointMs: 1000 });
    await lin.add([entry(0)]);
    await expect(lin.checkpointTick()).rejects.toThrow("TPM busy");
    clock.t = 500;
    expect(await lin.checkpointTick()).toBeUndefined();
    expect(calls).toBe(1);
    clock.t = 1000;
    expect((await lin.checkpointTick())?.checkpoint.size).toBe(1);
    expect(calls).toBe(2);
    await lin.close();
  });

  it("opens a checkpoints.log larger than its read buffer (records straddling chunk edges)", async () => {
    const dir = await tempDir();
    const clock = new FakeClock();
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(6));
    const lin = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now });
    await lin.add([entry(0)]);
    const root = lin.root();
    await lin.close(); // intent + checkpoint for size 1
    // 30k more identical intents (same size, same root: allowed) push the log past 1 MiB.
    const payload = encode(
      new Map<string, CborValue>([
        ["kind", "intent"],
        ["size", 1],
        ["root", root],
      ]),
    );
    const one = new Uint8Array(8 + payload.length);
    frameRecord(payload, one, 0);
    const many = new Uint8Array(one.length * 30_000);
    for (let i = 0; i < 30_000; i++) many.set(one, i * one.length);
    await appendFile(join(dir, "checkpoints.log"), many);
    const again = await openLineage({ dir, origin: ORIGIN, signer, now: clock.now });
    expect(again.latestCheckpoint()?.checkpoint.size).toBe(1);
    expect(again.checkpointLogLength).toBeGreaterThan(1 << 20);
    await again.close();
    // A second root for size 1 anywhere in the log refuses the open.
    const fork = encode(
      new Map<string, CborValue>([
        ["kind", "intent"],
        ["size", 1],
        ["root", new Uint8Array(32)],
      ]),
    );
    const rec = new Uint8Array(8 + fork.length);
    frameRecord(fork, rec, 0);
    await appendFile(join(dir, "checkpoints.log"), rec);
    await expect(openLineage({ dir, origin: ORIGIN, signer, now: clock.now })).rejects.toMatchObject({
      code: "config_invalid",
    });
  });
});
