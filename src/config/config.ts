import { createHash } from "node:crypto";
import { isAbsolute, join, resolve } from "node:path";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import { parseTomlDocument } from "../core/toml.js";
import { handleHex, parsePersistentHandle } from "../tpm/ops/handles.js";
import {
  type PcrSelection,
  parsePcrSelectionText,
  pcrSelectionToText,
} from "../tpm/structures/pcr-selection.js";
import { type ConfigSection, DEFAULTS, LINEAGE_SUBDIR } from "./defaults.js";
import {
  type CheckpointSigner,
  type KeyKind,
  type LogLevel,
  MAX_SOCKET_MODE,
  type RootMode,
  SCHEMA,
  SECTIONS,
  type TokenIssuer,
} from "./schema.js";

/** The daemon configuration with every default applied and every path absolute. */
export interface Config {
  readonly daemon: {
    readonly socket: string;
    /** Permission bits, e.g. 0o660. */
    readonly socketMode: number;
    readonly socketGroup?: string;
    readonly stateDir: string;
    readonly policy: string;
    readonly logLevel: LogLevel;
    readonly bootIdPath: string;
  };
  readonly tpm: {
    readonly tcti: string;
    readonly akHandle: number;
    readonly signingKeyHandle: number;
    readonly pcrs: PcrSelection;
    readonly timeoutMs: number;
    readonly ekCaBundle?: string;
  };
  readonly attest: {
    readonly epochMs: number;
    readonly idleEpochMs: number;
    readonly maxEvidenceAgeMs: number;
    readonly freshWaitMs?: number;
    readonly eventlog?: string;
    readonly ima?: string;
  };
  readonly lineage: {
    readonly dir: string;
    readonly checkpointMs: number;
    readonly segmentBytes: number;
  };
  readonly token: {
    readonly audience: string;
    readonly issuer: string;
    readonly skewS: number;
  };
  readonly limits: {
    readonly maxFrameBytes: number;
    readonly maxConnections: number;
    readonly maxConnectionsPerUid: number;
    readonly readTimeoutMs: number;
    readonly idleTimeoutMs: number;
    readonly requestsPerSecondPerUid: number;
    readonly burstPerUid: number;
    readonly denialWindowMs: number;
  };
  readonly metrics: {
    readonly socket?: string;
    readonly socketMode: number;
    readonly port?: number;
  };
  readonly hsm: {
    readonly require: RootMode;
    readonly module: string;
    readonly tokenLabel: string;
    readonly keyLabel: string;
    readonly pinFile?: string;
    readonly pinCredential?: string;
    readonly checkpoints?: CheckpointSigner;
    readonly tokenSigner: TokenIssuer;
  };
}

/** A value as the file spells it, canonicalized (paths absolute, handles 0x%08x, modes 4 digits). */
type FileValue = string | number;
/** The resolved file: section → key → canonical value; optional keys that are absent are omitted. */
export type ResolvedDocument = Record<ConfigSection, Record<string, FileValue>>;

function bad(source: string, key: string, why: string): ExecgateError {
  return new ExecgateError("config_invalid", `${source}: ${key}: ${why}`, { file: source, key });
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Date) return "a date";
  if (isTable(v)) return "a table";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a float";
  if (typeof v === "bigint") return "an integer";
  return `a ${typeof v}`;
}

/** Validates one value against its kind; returns the canonical file spelling. */
function checkValue(kind: KeyKind, v: unknown, key: string, source: string, baseDir: string): FileValue {
  const want = (what: string) => bad(source, key, `must be ${what}, got ${typeName(v)}`);
  switch (kind.type) {
    case "integer": {
      if (typeof v !== "number" || !Number.isSafeInteger(v)) throw want("an integer");
      if (v < kind.min || v > kind.max) throw bad(source, key, `${v} is outside ${kind.min}..${kind.max}`);
      return v;
    }
    case "string": {
      if (typeof v !== "string") throw want("a string");
      if (v.length === 0 || v.length > kind.maxLength)
        throw bad(source, key, `must be 1..${kind.maxLength} characters`);
      if (!kind.pattern.test(v)) throw bad(source, key, `must be ${kind.what}`);
      return v;
    }
    case "enum": {
      if (typeof v !== "string") throw want("a string");
      if (!kind.values.includes(v)) throw bad(source, key, `must be one of ${kind.values.join(", ")}`);
      return v;
    }
    case "path": {
      if (typeof v !== "string") throw want("a path string");
      if (v.length === 0 || v.includes("\0")) throw bad(source, key, "must be a non-empty path");
      const abs = resolve(baseDir, v);
      const bytes = Buffer.byteLength(abs);
      if (bytes > kind.maxBytes)
        throw bad(source, key, `path ${abs} is ${bytes} bytes, more than ${kind.maxBytes}`);
      return abs;
    }
    case "mode": {
      if (typeof v !== "string") throw want('an octal string such as "0660"');
      if (!/^[0-7]{3,4}$/.test(v)) throw bad(source, key, 'must be an octal string such as "0660"');
      const n = Number.parseInt(v, 8);
      if (n > MAX_SOCKET_MODE) throw bad(source, key, "only permission bits (at most 0777) are allowed");
      return n.toString(8).padStart(4, "0");
    }
    case "handle": {
      if (typeof v !== "string") throw want('a handle string such as "0x81000010"');
      const h = parsePersistentHandle(v);
      if (h === undefined) throw bad(source, key, `${v} is not a TPM persistent handle (0x81xxxxxx)`);
      return handleHex(h);
    }
    case "pcrs": {
      if (typeof v !== "string") throw want('a PCR selection such as "sha256:0,1,2"');
      try {
        return pcrSelectionToText(parsePcrSelectionText(v));
      } catch (e) {
        if (!isExecgateError(e)) throw e;
        throw bad(source, key, e.message);
      }
    }
  }
}

function snakeToCamel(k: string): string {
  return k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Validates a parsed TOML document against the closed schema (pure). `source` names the
 * file in error messages; `baseDir` (absolute) is where relative paths are resolved.
 */
export function configFromToml(doc: Record<string, unknown>, baseDir: string, source = "config"): Config {
  if (!isAbsolute(baseDir))
    throw new ExecgateError("internal", `config base directory ${baseDir} is not absolute`);
  for (const s of Object.keys(doc)) {
    if (!(SECTIONS as string[]).includes(s)) throw bad(source, s, "unknown key");
  }
  const out = {} as Record<ConfigSection, Record<string, FileValue>>;
  for (const section of SECTIONS) {
    const raw = doc[section] ?? {};
    if (!isTable(raw)) throw bad(source, section, `must be a table, got ${typeName(raw)}`);
    const specs = SCHEMA[section] as Record<string, { kind: KeyKind }>;
    for (const k of Object.keys(raw)) {
      if (!Object.hasOwn(specs, k)) throw bad(source, `${section}.${k}`, "unknown key");
    }
    const defaults = DEFAULTS[section] as Record<string, FileValue | undefined>;
    const values: Record<string, FileValue> = {};
    for (const [k, spec] of Object.entries(specs)) {
      const v = raw[k] ?? defaults[k];
      if (v !== undefined) values[k] = checkValue(spec.kind, v, `${section}.${k}`, source, baseDir);
    }
    out[section] = values;
  }
  if (out.lineage.dir === undefined) out.lineage.dir = join(out.daemon.state_dir as string, LINEAGE_SUBDIR);
  crossCheck(out, source);
  return toConfig(out);
}

function crossCheck(d: ResolvedDocument, source: string): void {
  const n = (s: ConfigSection, k: string) => d[s][k] as number;
  if (d.tpm.ak_handle === d.tpm.signing_key_handle)
    throw bad(source, "tpm.signing_key_handle", "must differ from tpm.ak_handle");
  if (n("attest", "idle_epoch_ms") < n("attest", "epoch_ms"))
    throw bad(source, "attest.idle_epoch_ms", "must be at least attest.epoch_ms");
  if (n("attest", "max_evidence_age_ms") < n("attest", "epoch_ms"))
    throw bad(source, "attest.max_evidence_age_ms", "must be at least attest.epoch_ms");
  if (n("limits", "idle_timeout_ms") < n("limits", "read_timeout_ms"))
    throw bad(source, "limits.idle_timeout_ms", "must be at least limits.read_timeout_ms");
  if (d.metrics.socket !== undefined && d.metrics.socket === d.daemon.socket)
    throw bad(source, "metrics.socket", "must differ from daemon.socket");
  if (d.metrics.socket !== undefined && d.metrics.port !== undefined)
    throw bad(source, "metrics.port", "set metrics.socket or metrics.port, not both");
  if (d.hsm.require === "hsm" && (d.hsm.checkpoints === "tpm" || d.hsm.checkpoints === "both"))
    throw bad(
      source,
      "hsm.checkpoints",
      `cannot be "${d.hsm.checkpoints}" when hsm.require is "hsm" (no TPM)`,
    );
  if (d.hsm.pin_file !== undefined && d.hsm.pin_credential !== undefined)
    throw bad(source, "hsm.pin_credential", "set hsm.pin_file or hsm.pin_credential, not both");
}

function toConfig(d: ResolvedDocument): Config {
  const sections: Record<string, Record<string, unknown>> = {};
  for (const section of SECTIONS) {
    const specs = SCHEMA[section] as Record<string, { kind: KeyKind }>;
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d[section])) {
      const kind = specs[k]!.kind.type;
      o[snakeToCamel(k)] =
        kind === "mode"
          ? Number.parseInt(v as string, 8)
          : kind === "handle"
            ? Number.parseInt((v as string).slice(2), 16)
            : kind === "pcrs"
              ? parsePcrSelectionText(v as string)
              : v;
    }
    sections[section] = o;
  }
  return sections as unknown as Config;
}

/** The config as the file would spell it, every default filled in (inverse of toConfig). */
export function resolvedDocument(config: Config): ResolvedDocument {
  const out = {} as ResolvedDocument;
  for (const section of SECTIONS) {
    const specs = SCHEMA[section] as Record<string, { kind: KeyKind }>;
    const values = config[section] as unknown as Record<string, unknown>;
    const o: Record<string, FileValue> = {};
    for (const [k, spec] of Object.entries(specs)) {
      const v = values[snakeToCamel(k)];
      if (v === undefined) continue;
      switch (spec.kind.type) {
        case "mode":
          o[k] = (v as number).toString(8).padStart(4, "0");
          break;
        case "handle":
          o[k] = handleHex(v as number);
          break;
        case "pcrs":
          o[k] = pcrSelectionToText(v as PcrSelection);
          break;
        default:
          o[k] = v as FileValue;
      }
    }
    out[section] = o;
  }
  return out;
}

/** Parses the config file text (pure). Invalid TOML and schema violations are config_invalid. */
export function parseConfig(text: string, baseDir: string, source = "config"): Config {
  const doc = parseTomlDocument(text, source);
  return configFromToml(doc, baseDir, source);
}

/** JSON with object keys sorted at every level, no whitespace: one spelling per value. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const keys = Object.keys(v).sort();
    const o = v as Record<string, unknown>;
    return `{${keys
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  if (typeof v === "number" && !Number.isFinite(v)) throw new ExecgateError("internal", "non-finite number");
  return JSON.stringify(v);
}

/**
 * SHA-256 over the canonical JSON of the resolved config (resolvedDocument): the lineage's
 * daemon_start entry records it, so an auditor can tell which settings a run used. Two files
 * that differ only in comments, key order or spelled-out defaults have the same digest.
 */
export function configDigest(config: Config): Uint8Array {
  return new Uint8Array(
    createHash("sha256")
      .update(canonicalJson(resolvedDocument(config)))
      .digest(),
  );
}
