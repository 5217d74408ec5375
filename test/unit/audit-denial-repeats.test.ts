import { describe, expect, it } from "vitest";
import { auditAttestation } from "../../src/audit/attestation.js";
import {
  type DenialRepeatsBody,
  decodeEntry,
  type Entry,
  encodeEntry,
  makeEntry,
} from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";

// The auditor's checks on repeated denials and denial codes, on hand-made entries: an honest
// window passes; a count, a window or a first denial that does not fit is reported.

const time = { wallMs: 1_764_000_000_000, monoUs: 1 };

/** request (uid 65534) → its denial (peer_unknown) → the repeats entry built by `body` and `refs`. */
function log(body: Partial<DenialRepeatsBody> = {}, refs?: (entries: Entry[]) => Entry["refs"]): Entry[] {
  const request = makeEntry("request", time, {
    requestId: "1",
    scope: "dev",
    actionDigest: new Uint8Array(32),
    peer: { uid: 65534, gid: 65534, pid: 7 },
  });
  const denial = makeEntry("decision", time, { allow: false, reason: "peer_unknown" }, [
    { index: 0, leafHash: leafHash(encodeEntry(request)) },
  ]);
  const entries: Entry[] = [request, denial];
  const ref = { index: 1, leafHash: leafHash(encodeEntry(denial)) };
  entries.push(
    makeEntry(
      "denial_repeats",
      time,
      {
        reason: "peer_unknown",
        uid: 65534,
        count: 599,
        firstMs: 1000,
        lastMs: 1413,
        windowMs: 10_000,
        ...body,
      },
      refs ? refs(entries) : [ref],
    ),
  );
  return entries;
}

function failures(entries: Entry[]) {
  return auditAttestation({ entries, checkpoints: new Map(), akPublic: undefined, requireTpm: false })
    .failures;
}

describe("audit: denial_repeats and denial codes", () => {
  it("an honest window verifies, named or not (its first denial may not have been durable)", () => {
    expect(failures(log())).toEqual([]);
    expect(failures(log({}, () => []))).toEqual([]);
    expect(failures(log({ count: 1, firstMs: 5, lastMs: 5, windowMs: 100 }))).toEqual([]);
  });

  it.each([
    ["no count", { count: 0 }, /counts no denial/],
    ["a zero window", { windowMs: 0, firstMs: 1, lastMs: 1 }, /window of 0 ms/],
    ["last before first", { firstMs: 2000, lastMs: 1999 }, /not within one window/],
    ["a span of a whole window", { firstMs: 0, lastMs: 10_000 }, /not within one window/],
    [
      "another reason than its first denial",
      { reason: "rate_limited" },
      /is not a denial of reason rate_limited/,
    ],
    [
      "another caller than its first denial",
      { uid: 1000 },
      /counts uid 1000, its first denial was of uid 65534/,
    ],
    [
      "an unidentified caller for an identified first denial",
      { uid: undefined },
      /counts uid \(unidentified\)/,
    ],
    [
      "a code of another reason",
      { code: "frame_too_large" },
      /code frame_too_large is not one of reason peer_unknown/,
    ],
  ] as const)("reports %s", (_what, body, reason) => {
    const entries = log(body as Partial<DenialRepeatsBody>);
    if ("uid" in body && body.uid === undefined) {
      const e = entries[2]!;
      const { uid: _, ...rest } = e.body as DenialRepeatsBody;
      entries[2] = makeEntry("denial_repeats", e.time, rest, e.refs);
    }
    const f = failures(entries);
    expect(f).toEqual([expect.objectContaining({ check: "denial_repeats", index: 2 })]);
    expect(f[0]!.reason).toMatch(reason);
  });

  it("reports a count beyond 2^53 (the decoder gives a bigint), without throwing", () => {
    const [request, denial, repeats] = log();
    const bytes = encodeEntry(
      makeEntry("denial_repeats", time, {
        ...(repeats!.body as DenialRepeatsBody),
        count: (2n ** 60n) as never,
      }),
    );
    const f = failures([request!, denial!, decodeEntry(bytes)]);
    expect(f.map((x) => x.reason)).toEqual(["a count or time beyond 2^53"]);
  });

  it("reports a first denial named by two windows, an allow or more than one entry named", () => {
    const entries = log();
    entries.push(entries[2]!);
    expect(failures(entries)).toEqual([
      expect.objectContaining({
        check: "denial_repeats",
        index: 3,
        reason: expect.stringMatching(/opened another window/),
      }),
    ]);
    const named = (es: Entry[]) => [{ index: 0, leafHash: leafHash(encodeEntry(es[0]!)) }];
    expect(failures(log({}, named))[0]!.reason).toMatch(/entry 0 is not a denial/);
    const two = (es: Entry[]) => [
      { index: 1, leafHash: leafHash(encodeEntry(es[1]!)) },
      { index: 0, leafHash: leafHash(encodeEntry(es[0]!)) },
    ];
    expect(failures(log({}, two))[0]!.reason).toMatch(/names more than the denial/);
  });

  it("reports a decision whose code is not of its reason, or on an allow", () => {
    const f = failures([
      makeEntry("decision", time, { allow: false, reason: "request_malformed", code: "frame_too_large" }),
      makeEntry("decision", time, { allow: false, reason: "rate_limited", code: "frame_too_large" }),
      makeEntry("decision", time, { allow: true, code: "frame_too_large" }),
    ]);
    expect(f.filter((x) => x.check === "decision_code").map((x) => x.index)).toEqual([1, 2]);
  });
});
