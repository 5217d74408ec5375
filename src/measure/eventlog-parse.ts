import { Cursor } from "../core/cursor.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import {
  EV,
  MAX_PCR_INDEX,
  PCR_INDEX_NONE,
  SIG_SP800_155,
  SIG_SP800_155_3,
  SIG_SPEC_ID_EVENT03,
  SIG_STARTUP_LOCALITY,
} from "./eventlog-types.js";
import { algById, type HashAlg } from "./hash.js";

/** Bounds for untrusted logs (real firmware logs hold a few hundred events and < 1 MiB). */
export const MAX_EVENTLOG_BYTES = 16 * 1024 * 1024;
export const MAX_EVENTS = 100_000;
export const MAX_SPEC_ID_ALGORITHMS = 16;
export const MAX_EVENT_DATA = 4 * 1024 * 1024;

export type EventLogFormat = "crypto-agile" | "sha1-legacy";

/** One digest algorithm declared by the Spec ID event (TCG_EfiSpecIdEventAlgorithmSize). */
export interface SpecIdAlgorithm {
  readonly algId: number;
  readonly digestSize: number;
  /** undefined for an algorithm this implementation cannot hash (parsed, never replayed). */
  readonly alg: HashAlg | undefined;
}

/** TCG_EfiSpecIDEvent — PFP §10.4.5.1. */
export interface SpecIdEvent {
  readonly platformClass: number;
  readonly specVersionMinor: number;
  readonly specVersionMajor: number;
  readonly specErrata: number;
  readonly uintnSize: number;
  readonly algorithms: readonly SpecIdAlgorithm[];
  readonly vendorInfo: Uint8Array;
}

export interface EventDigest {
  readonly algId: number;
  readonly digest: Uint8Array;
}

/** TCG_PCClientPCREvent (§10.2.1) or TCG_PCR_EVENT2 (§10.2.2), normalised. */
export interface TcgEvent {
  /** Position in the log, 0 = first record (the Spec ID event in a crypto-agile log). */
  readonly seq: number;
  /** Byte offset of the record in the file. */
  readonly offset: number;
  readonly pcrIndex: number;
  readonly eventType: number;
  readonly digests: readonly EventDigest[];
  /** A view into the input bytes; untrusted until its digest is checked (eventlog-decode.ts). */
  readonly data: Uint8Array;
}

export interface EventLog {
  readonly format: EventLogFormat;
  readonly specId: SpecIdEvent | undefined;
  /** Digest algorithms of the log: the Spec ID list, or SHA-1 only for a legacy log. */
  readonly algorithms: readonly SpecIdAlgorithm[];
  readonly events: readonly TcgEvent[];
  /** From an EV_NO_ACTION StartupLocality event (PFP §10.4.5.3), if present. */
  readonly startupLocality: number | undefined;
  /** An EV_EFI_HCRTM_EVENT is present: PCR 0 was started by an H-CRTM from locality 4. */
  readonly hcrtm: boolean;
  /** Count of SP800-155 reference-manifest EV_NO_ACTION events (never extended). */
  readonly sp800155Events: number;
}

const SHA1 = algById(0x0004)!;
const ASCII = new TextDecoder("latin1");

/** A NUL-terminated 16-byte signature at the start of EV_NO_ACTION data, or undefined. */
export function noActionSignature(data: Uint8Array): string | undefined {
  if (data.length < 16) return undefined;
  const nul = data.subarray(0, 16).indexOf(0);
  const end = nul === -1 ? 16 : nul;
  return ASCII.decode(data.subarray(0, end));
}

function parseSpecId(data: Uint8Array): SpecIdEvent {
  const c = new Cursor(data);
  c.skip(16, "TCG_EfiSpecIDEvent.signature");
  const platformClass = c.u32le("platformClass");
  const specVersionMinor = c.u8("specVersionMinor");
  const specVersionMajor = c.u8("specVersionMajor");
  const specErrata = c.u8("specErrata");
  const uintnSize = c.u8("uintnSize");
  const n = c.count(c.u32le("numberOfAlgorithms"), MAX_SPEC_ID_ALGORITHMS, "numberOfAlgorithms");
  if (n === 0) throw new ExecgateError("malformed", "Spec ID event declares no algorithms");
  const algorithms: SpecIdAlgorithm[] = [];
  for (let i = 0; i < n; i++) {
    const algId = c.u16le("digestSizes.algorithmId");
    const digestSize = c.u16le("digestSizes.digestSize");
    const alg = algById(algId);
    if (alg && alg.size !== digestSize) {
      throw new ExecgateError("malformed", `Spec ID: ${alg.name} digestSize ${digestSize} != ${alg.size}`);
    }
    if (digestSize === 0 || digestSize > 128) {
      throw new ExecgateError(
        "malformed",
        `Spec ID: digestSize ${digestSize} for alg 0x${algId.toString(16)}`,
      );
    }
    if (algorithms.some((a) => a.algId === algId)) {
      throw new ExecgateError("malformed", `Spec ID: algorithm 0x${algId.toString(16)} listed twice`);
    }
    algorithms.push({ algId, digestSize, alg });
  }
  const vendorInfoSize = c.u8("vendorInfoSize");
  const vendorInfo = c.take(vendorInfoSize, "vendorInfo");
  // Deliberately strict: the Spec ID structure must fill its EventSize exactly (the
  // tpm2-tools specid-vendordata fixture, whose EventSize omits vendorInfo, is rejected).
  c.end("TCG_EfiSpecIDEvent");
  return { platformClass, specVersionMinor, specVersionMajor, specErrata, uintnSize, algorithms, vendorInfo };
}

function withOffset<T>(offset: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isExecgateError(e)) {
      const inner = typeof e.detail.offset === "number" ? e.detail.offset : 0;
      throw new ExecgateError(e.code, e.message, {
        ...e.detail,
        offset: offset + inner,
        eventOffset: offset,
      });
    }
    throw e;
  }
}

/** TCG_PCClientPCREvent — PFP §10.2.1 (SHA-1 format). */
function readSha1Event(c: Cursor, seq: number): TcgEvent {
  const offset = c.offset;
  const pcrIndex = c.u32le("TCG_PCClientPCREvent.pcrIndex");
  const eventType = c.u32le("eventType");
  const d = c.bytesView(20, "digest");
  const size = c.count(c.u32le("eventDataSize"), MAX_EVENT_DATA, "eventDataSize");
  const data = c.bytesView(size, "event");
  return { seq, offset, pcrIndex, eventType, digests: [{ algId: SHA1.algId, digest: d }], data };
}

/** TCG_PCR_EVENT2 — PFP §10.2.2, digests as TPML_DIGEST_VALUES (little-endian in the log). */
function readEvent2(c: Cursor, seq: number, algorithms: readonly SpecIdAlgorithm[]): TcgEvent {
  const offset = c.offset;
  const pcrIndex = c.u32le("TCG_PCR_EVENT2.pcrIndex");
  const eventType = c.u32le("eventType");
  const count = c.count(c.u32le("digests.count"), algorithms.length, "digests.count");
  const digests: EventDigest[] = [];
  for (let i = 0; i < count; i++) {
    const algId = c.u16le("TPMT_HA.hashAlg");
    const a = algorithms.find((x) => x.algId === algId);
    if (!a) {
      throw new ExecgateError(
        "malformed",
        `digest algorithm 0x${algId.toString(16)} not declared in Spec ID`,
        {
          offset: c.offset - 2,
        },
      );
    }
    if (digests.some((x) => x.algId === algId)) {
      throw new ExecgateError("malformed", `digest algorithm 0x${algId.toString(16)} twice in one event`, {
        offset: c.offset - 2,
      });
    }
    digests.push({ algId, digest: c.bytesView(a.digestSize, "TPMT_HA.digest") });
  }
  const size = c.count(c.u32le("eventSize"), MAX_EVENT_DATA, "eventSize");
  const data = c.bytesView(size, "event");
  return { seq, offset, pcrIndex, eventType, digests, data };
}

function checkPcrIndex(e: TcgEvent): void {
  if (e.eventType === EV.EV_NO_ACTION) {
    if (e.pcrIndex !== PCR_INDEX_NONE && e.pcrIndex > MAX_PCR_INDEX) {
      throw new ExecgateError("malformed", `EV_NO_ACTION with PCR index ${e.pcrIndex}`, { offset: e.offset });
    }
    return;
  }
  if (e.pcrIndex > MAX_PCR_INDEX) {
    throw new ExecgateError("malformed", `event ${e.seq}: PCR index ${e.pcrIndex} out of range`, {
      offset: e.offset,
    });
  }
}

/**
 * Parses a TCG PC Client firmware event log (binary_bios_measurements): crypto-agile when the
 * first record is the `Spec ID Event03` EV_NO_ACTION event (PFP §10.4.5.1), SHA-1 legacy
 * otherwise. Throws ExecgateError (malformed / truncated / limit_exceeded / trailing_bytes)
 * with `detail.offset` = absolute byte offset of the failure.
 */
export function parseEventLog(bytes: Uint8Array): EventLog {
  if (bytes.length === 0) throw new ExecgateError("malformed", "empty event log", { offset: 0 });
  if (bytes.length > MAX_EVENTLOG_BYTES) {
    throw new ExecgateError("limit_exceeded", `event log larger than ${MAX_EVENTLOG_BYTES} bytes`, {
      offset: 0,
    });
  }
  const c = new Cursor(bytes);
  const first = readSha1Event(c, 0);
  const events: TcgEvent[] = [first];
  let specId: SpecIdEvent | undefined;
  let format: EventLogFormat = "sha1-legacy";
  if (first.eventType === EV.EV_NO_ACTION && noActionSignature(first.data) === SIG_SPEC_ID_EVENT03) {
    if (first.pcrIndex !== 0 || first.digests[0]!.digest.some((b) => b !== 0)) {
      throw new ExecgateError("malformed", "Spec ID event must have PCR index 0 and a zero digest", {
        offset: 0,
      });
    }
    specId = withOffset(32, () => parseSpecId(first.data));
    format = "crypto-agile";
  }
  const algorithms: readonly SpecIdAlgorithm[] = specId
    ? specId.algorithms
    : [{ algId: SHA1.algId, digestSize: SHA1.size, alg: SHA1 }];
  if (!specId) checkPcrIndex(first);
  while (c.remaining > 0) {
    if (events.length >= MAX_EVENTS) {
      throw new ExecgateError("limit_exceeded", `more than ${MAX_EVENTS} events`, { offset: c.offset });
    }
    const start = c.offset;
    const e = withOffset(0, () =>
      specId ? readEvent2(c, events.length, algorithms) : readSha1Event(c, events.length),
    );
    if (e.offset !== start) throw new ExecgateError("internal", "cursor desynchronised");
    checkPcrIndex(e);
    events.push(e);
  }
  let startupLocality: number | undefined;
  let hcrtm = false;
  let sp800155Events = 0;
  for (const e of events) {
    if (e.eventType === EV.EV_EFI_HCRTM_EVENT) hcrtm = true;
    if (e.eventType !== EV.EV_NO_ACTION || (e === events[0] && specId !== undefined)) continue;
    const sig = noActionSignature(e.data);
    if (sig === SIG_STARTUP_LOCALITY) {
      // PFP §10.4.5.3: 16-byte signature then a UINT8 locality; only valid for PCR 0.
      if (e.data.length !== 17 || e.pcrIndex !== 0) {
        throw new ExecgateError("malformed", "malformed StartupLocality event", { offset: e.offset });
      }
      if (startupLocality !== undefined) {
        throw new ExecgateError("malformed", "more than one StartupLocality event", { offset: e.offset });
      }
      startupLocality = e.data[16]!;
    } else if (sig === SIG_SP800_155 || sig === SIG_SP800_155_3) {
      sp800155Events++;
    }
  }
  return { format, specId, algorithms, events, startupLocality, hcrtm, sp800155Events };
}
