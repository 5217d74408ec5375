import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { decodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { Journal } from "../../src/lineage/journal.js";

const time = { wallMs: 1, monoUs: 1 };

it("appendLinked gives entries the indices their back-references name, under concurrent appends", async () => {
  const j = await Journal.open({ dir: await mkdtemp(join(tmpdir(), "execgate-linked-")) });
  try {
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      all.push(j.add([makeEntry("daemon_stop", time, { reason: `noise ${i}` })]));
      all.push(
        j.add((first) => [
          makeEntry("decision", time, { allow: false, reason: "pcr_mismatch" }),
          makeEntry("daemon_stop", time, { reason: `points at ${first}` }, [
            { index: first, leafHash: new Uint8Array(32) },
          ]),
        ]),
      );
    }
    await Promise.all(all);
    for (let i = 0; i < j.size; i++) {
      const e = decodeEntry(await j.readEntry(i));
      if (e.type === "daemon_stop" && e.body.reason.startsWith("points at")) {
        const target = e.refs[0]!.index;
        expect(e.body.reason).toBe(`points at ${target}`);
        expect(target).toBe(i - 1);
        expect(decodeEntry(await j.readEntry(target)).type).toBe("decision");
      }
    }
  } finally {
    await j.close();
  }
});
