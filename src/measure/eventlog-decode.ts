import { Cursor } from "../core/cursor.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import type { EventLog, TcgEvent } from "./eventlog-parse.js";
import { EV, eventTypeName } from "./eventlog-types.js";
import { algById, type BankName, digest } from "./hash.js";

/**
 * Decoding of the event data that policies need. The rule (go-attestation's event log
 * disclosure): an event's type and data are not covered by the PCR, only its digest is. So
 * data is used only from events whose digest is defined over that data and verifies in every
 * bank of the event; everything else is reported as digests alone.
 */

export const MAX_SIGNATURES = 100_000;
export const MAX_UNICODE_NAME = 1024;

/**
 * verified: the digest is the hash of the data in every bank, the data may be used;
 * mismatch: the data should be hashed but is not (a tampered or buggy log);
 * not_data_digest: the digest is over something else (an image, a file), data untrusted.
 */
export type DigestCheck = "verified" | "mismatch" | "not_data_digest";

/**
 * Event types whose digest is the hash of the event data (PFP §10.4.1 Table 9 and §10.4.4):
 * EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_S_CRTM_VERSION, EV_EFI_VARIABLE_DRIVER_CONFIG
 * and EV_EFI_VARIABLE_AUTHORITY (the whole UEFI_VARIABLE_DATA), EV_EFI_GPT_EVENT.
 * EV_EFI_VARIABLE_BOOT(2) and EV_EFI_VARIABLE_AUTHORITY digests cover the whole
 * UEFI_VARIABLE_DATA on some firmware and only VariableData on others (shim, older firmware):
 * both are accepted. EV_IPL is a data digest for boot loader strings — systemd-boot logs
 * UTF-16 command lines hashed as logged, grub hashes its strings without the trailing NUL —
 * but not for files measured by path (grub PCR 9), so a non-matching EV_IPL is a mismatch
 * only when it is UTF-16 text.
 */
const DATA_DIGEST_TYPES = new Set<number>([
  EV.EV_SEPARATOR,
  EV.EV_ACTION,
  EV.EV_EFI_ACTION,
  EV.EV_S_CRTM_VERSION,
  EV.EV_EFI_VARIABLE_DRIVER_CONFIG,
  EV.EV_EFI_GPT_EVENT,
]);

function allBanksMatch(e: TcgEvent, data: Uint8Array): boolean {
  let checked = 0;
  for (const d of e.digests) {
    const alg = algById(d.algId);
    if (!alg) continue;
    if (!bytesEqual(digest(alg, data), d.digest)) return false;
    checked++;
  }
  return checked > 0;
}

const GRUB_IPL_PREFIXES = ["grub_cmd: ", "kernel_cmdline: ", "module_cmdline: ", "grub_kernel_cmdline "];

/** UTF-16LE ASCII text (systemd-boot); odd lengths occur (a trailing half NUL). */
function isUtf16Text(b: Uint8Array): boolean {
  if (b.length < 4) return false;
  for (let i = 1; i < b.length; i += 2) if (b[i] !== 0) return false;
  return b[0] !== 0;
}

export function checkEventDigest(e: TcgEvent): DigestCheck {
  if (e.eventType === EV.EV_IPL) {
    if (allBanksMatch(e, e.data)) return "verified";
    let end = e.data.length;
    while (end > 0 && e.data[end - 1] === 0) end--;
    if (end < e.data.length && allBanksMatch(e, e.data.subarray(0, end))) return "verified";
    // grub logs "grub_cmd: …" / "kernel_cmdline: …" but hashes only the text after the prefix.
    const t = latin1.decode(e.data.subarray(0, 32));
    const prefix = GRUB_IPL_PREFIXES.find((p) => t.startsWith(p));
    if (prefix && allBanksMatch(e, e.data.subarray(prefix.length, end))) return "verified";
    return isUtf16Text(e.data) ? "mismatch" : "not_data_digest";
  }
  if (
    e.eventType === EV.EV_EFI_VARIABLE_BOOT ||
    e.eventType === EV.EV_EFI_VARIABLE_BOOT2 ||
    e.eventType === EV.EV_EFI_VARIABLE_AUTHORITY
  ) {
    if (allBanksMatch(e, e.data)) return "verified";
    const v = tryDecode(() => decodeVariableData(e.data));
    if (v && allBanksMatch(e, v.variableData)) return "verified";
    // Old shim logs its vendor certificate / MokList with a digest over neither form (IBM TSS
    // sm2.log): such data stays unverified, but it is not evidence of tampering either.
    return e.eventType === EV.EV_EFI_VARIABLE_AUTHORITY ? "not_data_digest" : "mismatch";
  }
  if (!DATA_DIGEST_TYPES.has(e.eventType)) return "not_data_digest";
  return allBanksMatch(e, e.data) ? "verified" : "mismatch";
}

function tryDecode<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (isExecgateError(e)) return undefined;
    throw e;
  }
}

export function guidToString(b: Uint8Array): string {
  // EFI_GUID: Data1 (u32 LE), Data2 (u16 LE), Data3 (u16 LE), Data4[8].
  const h = (x: Uint8Array) => toHex(x);
  const rev = (x: Uint8Array) => h(Uint8Array.from(x).reverse());
  return `${rev(b.subarray(0, 4))}-${rev(b.subarray(4, 6))}-${rev(b.subarray(6, 8))}-${h(b.subarray(8, 10))}-${h(b.subarray(10, 16))}`;
}

export const EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
export const EFI_IMAGE_SECURITY_DATABASE_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
export const EFI_CERT_SHA256_GUID = "c1c41626-504c-4092-aca9-41f936934328";
export const EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072";

/** UEFI_VARIABLE_DATA — PFP §10.4.4 (EV_EFI_VARIABLE_* event data). */
export interface UefiVariableData {
  readonly variableName: string;
  readonly unicodeName: string;
  readonly variableData: Uint8Array;
}

export function decodeVariableData(data: Uint8Array): UefiVariableData {
  const c = new Cursor(data);
  const variableName = guidToString(c.bytesView(16, "UEFI_VARIABLE_DATA.VariableName"));
  const nameLen = c.u64le("UnicodeNameLength");
  const dataLen = c.u64le("VariableDataLength");
  if (nameLen > BigInt(MAX_UNICODE_NAME)) {
    throw new ExecgateError("limit_exceeded", `UnicodeNameLength ${nameLen}`);
  }
  if (dataLen > BigInt(c.remaining)) throw new ExecgateError("truncated", `VariableDataLength ${dataLen}`);
  const nameBytes = c.bytesView(Number(nameLen) * 2, "UnicodeName");
  const unicodeName = new TextDecoder("utf-16le").decode(nameBytes);
  const variableData = c.bytesView(Number(dataLen), "VariableData");
  c.end("UEFI_VARIABLE_DATA");
  return { variableName, unicodeName, variableData };
}

/** EFI_SIGNATURE_LIST / EFI_SIGNATURE_DATA — UEFI 2.10 §32.4.1. */
export interface EfiSignature {
  readonly signatureType: string;
  readonly owner: string;
  readonly data: Uint8Array;
}

export function decodeSignatureLists(bytes: Uint8Array): EfiSignature[] {
  const c = new Cursor(bytes);
  const out: EfiSignature[] = [];
  while (c.remaining > 0) {
    const signatureType = guidToString(c.bytesView(16, "EFI_SIGNATURE_LIST.SignatureType"));
    const listSize = c.u32le("SignatureListSize");
    const headerSize = c.u32le("SignatureHeaderSize");
    const sigSize = c.u32le("SignatureSize");
    if (listSize < 28 + headerSize || sigSize < 16) {
      throw new ExecgateError("malformed", `EFI_SIGNATURE_LIST sizes ${listSize}/${headerSize}/${sigSize}`);
    }
    const body = c.sub(listSize - 28, "EFI_SIGNATURE_LIST body");
    body.skip(headerSize, "SignatureHeader");
    if (body.remaining % sigSize !== 0) {
      throw new ExecgateError("malformed", "EFI_SIGNATURE_LIST not a whole number of signatures");
    }
    while (body.remaining > 0) {
      if (out.length >= MAX_SIGNATURES) throw new ExecgateError("limit_exceeded", "too many EFI signatures");
      const owner = guidToString(body.bytesView(16, "EFI_SIGNATURE_DATA.SignatureOwner"));
      out.push({ signatureType, owner, data: body.bytesView(sigSize - 16, "SignatureData") });
    }
  }
  return out;
}

/** UEFI_IMAGE_LOAD_EVENT — PFP §10.4.4 (EV_EFI_BOOT_SERVICES_APPLICATION data). */
export interface ImageLoadEvent {
  readonly imageLocationInMemory: bigint;
  readonly imageLengthInMemory: bigint;
  readonly imageLinkTimeAddress: bigint;
  readonly devicePathLength: number;
}

export function decodeImageLoadEvent(data: Uint8Array): ImageLoadEvent {
  const c = new Cursor(data);
  const imageLocationInMemory = c.u64le("ImageLocationInMemory");
  const imageLengthInMemory = c.u64le("ImageLengthInMemory");
  const imageLinkTimeAddress = c.u64le("ImageLinkTimeAddress");
  const len = c.u64le("LengthOfDevicePath");
  if (len > BigInt(c.remaining)) throw new ExecgateError("truncated", `LengthOfDevicePath ${len}`);
  c.skip(Number(len), "DevicePath");
  return { imageLocationInMemory, imageLengthInMemory, imageLinkTimeAddress, devicePathLength: Number(len) };
}

export interface BootApplication {
  readonly seq: number;
  readonly pcrIndex: number;
  /** Authenticode digests of the image per bank (the event digest; the data cannot prove it). */
  readonly digests: Readonly<Partial<Record<BankName, string>>>;
}

/** PCR 4 holds the boot manager's code (PFP §3.3.4.5): eventlog.boot_applications checks every event in it. */
export const BOOT_APPLICATION_PCR = 4;
/** Longest EV_EFI_ACTION / EV_ACTION text accepted as a plain action string in PCR 4. */
const MAX_ACTION_TEXT = 256;

/** An event extended into PCR 4. The type is not covered by the PCR, so it decides nothing alone. */
export interface BootPathEvent {
  readonly seq: number;
  readonly type: string;
  readonly digests: Readonly<Partial<Record<BankName, string>>>;
  /**
   * A digest-verified EV_SEPARATOR (4 bytes) or EV_EFI_ACTION / EV_ACTION (short printable
   * ASCII): what was extended is the hash of these few bytes, so it cannot be an image's
   * Authenticode digest. Such events pass without being listed.
   */
  readonly plainData: boolean;
}

export interface SecureBootVariable {
  readonly name: string;
  readonly seq: number;
  readonly data: Uint8Array;
}

/** What policy rules read from a log; every field comes from digest-verified events only. */
export interface EventLogFacts {
  /** SecureBoot variable = 1; false for 0 or an empty variable; null if no verified event. */
  readonly secureBoot: boolean | null;
  /** PCR 7 variables measured by EV_EFI_VARIABLE_DRIVER_CONFIG: SecureBoot, PK, KEK, db, dbx … */
  readonly variables: readonly SecureBootVariable[];
  /** SHA-256 hashes (hex) listed in the measured dbx. */
  readonly dbxSha256: readonly string[];
  /** Count of X.509 certificates in the measured db. */
  readonly dbCertificates: number;
  /** EV_EFI_VARIABLE_AUTHORITY events (verified): variable name and seq. */
  readonly authorities: readonly { seq: number; name: string }[];
  readonly bootApplications: readonly BootApplication[];
  /** Every event extended into PCR 4, whatever its (unprotected) type says. */
  readonly bootPath: readonly BootPathEvent[];
  readonly efiActions: readonly string[];
  /** EV_IPL strings whose digest verifies (boot loader commands and kernel command lines). */
  readonly ipl: readonly string[];
  /** EV_SEPARATOR events: PCR and whether the value was the normal 0x00000000. */
  readonly separators: readonly { pcr: number; value: string }[];
  /** EV_S_CRTM_VERSION (verified): UTF-16 text, or the hex of a GUID/binary version. */
  readonly scrtmVersion: string | null;
  /** EV_EVENT_TAG (TCG_PCClientTaggedEvent, PFP §10.4.2): tag ids; data not verifiable. */
  readonly eventTags: readonly { seq: number; pcr: number; taggedEventID: number; size: number }[];
  /** Events whose digest should equal the hash of their data but does not. */
  readonly digestMismatches: readonly { seq: number; pcr: number; type: string }[];
}

/**
 * EV_S_CRTM_VERSION data is usually a NUL-terminated UCS-2 string, sometimes a GUID or vendor
 * bytes: the text up to the first 0x0000 code unit when that is printable, else hex of all data.
 */
function crtmVersion(b: Uint8Array): string {
  let end = 0;
  while (end + 1 < b.length && (b[end] !== 0 || b[end + 1] !== 0)) end += 2;
  const body = b.subarray(0, end);
  return end > 0 && isUtf16Text(body) ? utf16(body) : toHex(b);
}

const latin1 = new TextDecoder("latin1");
const utf16le = new TextDecoder("utf-16le");
function utf16(b: Uint8Array): string {
  return utf16le.decode(b).replace(/\0+$/, "");
}
function isPrintableAscii(b: Uint8Array): boolean {
  return b.length > 0 && b.length <= MAX_ACTION_TEXT && b.every((c) => c >= 0x20 && c < 0x7f);
}

/** See BootPathEvent.plainData. */
function isPlainDataEvent(e: TcgEvent, check: DigestCheck): boolean {
  if (check !== "verified") return false;
  if (e.eventType === EV.EV_SEPARATOR) return e.data.length === 4;
  if (e.eventType === EV.EV_EFI_ACTION || e.eventType === EV.EV_ACTION) return isPrintableAscii(e.data);
  return false;
}

function bankDigests(e: TcgEvent): Partial<Record<BankName, string>> {
  const digests: Partial<Record<BankName, string>> = {};
  for (const d of e.digests) {
    const a = algById(d.algId);
    if (a) digests[a.name] = toHex(d.digest);
  }
  return digests;
}

function text(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return latin1.decode(nul === -1 ? b : b.subarray(0, nul));
}

export function eventLogFacts(log: EventLog): EventLogFacts {
  let secureBoot: boolean | null = null;
  const variables: SecureBootVariable[] = [];
  const dbxSha256: string[] = [];
  let dbCertificates = 0;
  const authorities: { seq: number; name: string }[] = [];
  const bootApplications: BootApplication[] = [];
  const bootPath: BootPathEvent[] = [];
  const efiActions: string[] = [];
  const ipl: string[] = [];
  const separators: { pcr: number; value: string }[] = [];
  let scrtmVersion: string | null = null;
  const eventTags: { seq: number; pcr: number; taggedEventID: number; size: number }[] = [];
  const digestMismatches: { seq: number; pcr: number; type: string }[] = [];
  for (const e of log.events) {
    if (e.eventType === EV.EV_NO_ACTION) continue;
    const check = checkEventDigest(e);
    if (e.pcrIndex === BOOT_APPLICATION_PCR) {
      bootPath.push({
        seq: e.seq,
        type: eventTypeName(e.eventType),
        digests: bankDigests(e),
        plainData: isPlainDataEvent(e, check),
      });
    }
    if (check === "mismatch") {
      digestMismatches.push({ seq: e.seq, pcr: e.pcrIndex, type: eventTypeName(e.eventType) });
      continue;
    }
    switch (e.eventType) {
      case EV.EV_EFI_VARIABLE_DRIVER_CONFIG: {
        if (e.pcrIndex !== 7) break;
        const v = tryDecode(() => decodeVariableData(e.data));
        if (!v) break;
        const global = v.variableName === EFI_GLOBAL_VARIABLE;
        const secdb = v.variableName === EFI_IMAGE_SECURITY_DATABASE_GUID;
        if (global && v.unicodeName === "SecureBoot") {
          secureBoot = v.variableData.length >= 1 && v.variableData[0] === 1;
        }
        if ((global && ["SecureBoot", "PK", "KEK"].includes(v.unicodeName)) || secdb) {
          variables.push({ name: v.unicodeName, seq: e.seq, data: v.variableData });
        }
        if (secdb && (v.unicodeName === "dbx" || v.unicodeName === "db")) {
          const sigs = tryDecode(() => decodeSignatureLists(v.variableData)) ?? [];
          for (const s of sigs) {
            if (v.unicodeName === "dbx" && s.signatureType === EFI_CERT_SHA256_GUID && s.data.length === 32) {
              dbxSha256.push(toHex(s.data));
            }
            if (v.unicodeName === "db" && s.signatureType === EFI_CERT_X509_GUID) dbCertificates++;
          }
        }
        break;
      }
      case EV.EV_EFI_VARIABLE_AUTHORITY: {
        const v = check === "verified" ? tryDecode(() => decodeVariableData(e.data)) : undefined;
        authorities.push({ seq: e.seq, name: v ? v.unicodeName : "(unverified)" });
        break;
      }
      case EV.EV_EFI_BOOT_SERVICES_APPLICATION:
        bootApplications.push({ seq: e.seq, pcrIndex: e.pcrIndex, digests: bankDigests(e) });
        break;
      case EV.EV_EFI_ACTION:
        efiActions.push(text(e.data));
        break;
      case EV.EV_IPL:
        if (check === "verified") ipl.push(isUtf16Text(e.data) ? utf16(e.data) : text(e.data));
        break;
      case EV.EV_S_CRTM_VERSION:
        scrtmVersion = crtmVersion(e.data);
        break;
      case EV.EV_EVENT_TAG: {
        const t = tryDecode(() => {
          const c = new Cursor(e.data);
          const taggedEventID = c.u32le("TCG_PCClientTaggedEvent.taggedEventID");
          const size = c.u32le("taggedEventDataSize");
          c.skip(size, "taggedEventData");
          return { taggedEventID, size };
        });
        if (t) eventTags.push({ seq: e.seq, pcr: e.pcrIndex, ...t });
        break;
      }
      case EV.EV_SEPARATOR:
        separators.push({ pcr: e.pcrIndex, value: toHex(e.data) });
        break;
      default:
        break;
    }
  }
  return {
    secureBoot,
    variables,
    dbxSha256,
    dbCertificates,
    authorities,
    bootApplications,
    bootPath,
    efiActions,
    ipl,
    separators,
    scrtmVersion,
    eventTags,
    digestMismatches,
  };
}
