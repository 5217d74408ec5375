import { type ConfigSection, DEFAULTS } from "./defaults.js";

/**
 * The closed schema of the daemon configuration file: for every key of DEFAULTS, its kind,
 * its range and one line of documentation. The compiler checks that SCHEMA and DEFAULTS name
 * the same keys; docs/config.md is rendered from both (doc.ts).
 */

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const ROOT_MODES = ["tpm", "hsm", "tpm+hsm"] as const;
export type RootMode = (typeof ROOT_MODES)[number];
export const CHECKPOINT_SIGNERS = ["tpm", "hsm", "both"] as const;
export type CheckpointSigner = (typeof CHECKPOINT_SIGNERS)[number];
export const TOKEN_ISSUERS = ["memory", "hsm"] as const;
export type TokenIssuer = (typeof TOKEN_ISSUERS)[number];
/** A PKCS#11 label as the config spells it (the token pads it with spaces). */
const PKCS11_LABEL = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
export const MAX_PATH_BYTES = 4095;
export const MAX_SOCKET_MODE = 0o777;

export type KeyKind =
  | {
      readonly type: "string";
      readonly pattern: RegExp;
      /** What the pattern means, for error messages and docs. */
      readonly what: string;
      readonly maxLength: number;
    }
  /** A filesystem path; relative paths are resolved against the config file's directory. */
  | { readonly type: "path"; readonly maxBytes: number }
  | { readonly type: "integer"; readonly min: number; readonly max: number }
  | { readonly type: "enum"; readonly values: readonly string[] }
  /** Permission bits as an octal string, "0660". */
  | { readonly type: "mode" }
  /** A TPM persistent handle, "0x81xxxxxx". */
  | { readonly type: "handle" }
  /** A tpm2-tools PCR selection, "sha256:0,1,2". */
  | { readonly type: "pcrs" };

export interface KeySpec {
  readonly kind: KeyKind;
  readonly doc: string;
  /** For optional keys without a default: what happens when the key is absent. */
  readonly absent?: string;
}

type Schema = { readonly [S in ConfigSection]: { readonly [K in keyof (typeof DEFAULTS)[S]]: KeySpec } };

const path: KeyKind = { type: "path", maxBytes: MAX_PATH_BYTES };
const ms = (min: number, max: number): KeyKind => ({ type: "integer", min, max });

export const SCHEMA: Schema = {
  daemon: {
    socket: {
      kind: { type: "path", maxBytes: MAX_SOCKET_PATH_BYTES },
      doc: "Unix socket the daemon listens on",
    },
    socket_mode: { kind: { type: "mode" }, doc: "permission bits of the socket (octal string)" },
    socket_group: {
      kind: {
        type: "string",
        pattern: /^(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10})$/,
        what: "a group name or a numeric gid",
        maxLength: 33,
      },
      doc: "group owning the socket",
      absent: "the daemon's primary group",
    },
    state_dir: { kind: path, doc: "directory for the daemon's state" },
    policy: { kind: path, doc: "policy file (executors, scopes, integrity)" },
    log_level: { kind: { type: "enum", values: LOG_LEVELS }, doc: "pino log level" },
    boot_id_path: { kind: path, doc: "file holding the kernel's boot id" },
  },
  tpm: {
    tcti: {
      kind: {
        type: "string",
        pattern: /^[a-z0-9_-]+(?::[^\0\n\r]*)?$/,
        what: "a TCTI string name[:config]",
        maxLength: 1024,
      },
      doc: "TCTI for tpm2-tools",
    },
    ak_handle: { kind: { type: "handle" }, doc: "persistent handle of the attestation key" },
    signing_key_handle: {
      kind: { type: "handle" },
      doc: "persistent handle of the AK-certified checkpoint signing key; differs from ak_handle",
    },
    pcrs: { kind: { type: "pcrs" }, doc: "PCR selection every epoch quote covers" },
    timeout_ms: { kind: ms(100, 600_000), doc: "timeout of one tpm2-tools call" },
    ek_ca_bundle: {
      kind: path,
      doc: "PEM bundle of EK certificate CAs; the daemon refuses to start unless the EK's certificate chains to it",
      absent: "the EK certificate chain is not checked",
    },
  },
  attest: {
    epoch_ms: { kind: ms(50, 600_000), doc: "epoch period while there is activity" },
    idle_epoch_ms: { kind: ms(50, 3_600_000), doc: "epoch period when idle; at least epoch_ms" },
    max_evidence_age_ms: {
      kind: ms(50, 3_600_000),
      doc: "oldest verified evidence a token may be issued on; at least epoch_ms",
    },
    fresh_wait_ms: {
      kind: ms(50, 600_000),
      doc: "how long a request waits for a new epoch when the evidence is stale or its scope is fresh",
      absent: "2 × epoch_ms + tpm.timeout_ms",
    },
    eventlog: {
      kind: path,
      doc: "TCG event log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements)",
      absent: "the event log is not read",
    },
    ima: {
      kind: path,
      doc: "IMA measurement list (e.g. /sys/kernel/security/ima/binary_runtime_measurements)",
      absent: "the IMA list is not read",
    },
  },
  lineage: {
    dir: { kind: path, doc: "lineage log directory", absent: "`<daemon.state_dir>/lineage`" },
    checkpoint_ms: { kind: ms(100, 3_600_000), doc: "minimum interval between signed checkpoints" },
    segment_bytes: {
      kind: { type: "integer", min: 1 << 20, max: 1 << 30 },
      doc: "size at which journal segments rotate",
    },
  },
  token: {
    audience: {
      kind: {
        type: "string",
        pattern: /^[\x21-\x7e]+$/,
        what: "printable ASCII without spaces",
        maxLength: 256,
      },
      doc: "audience of tokens when a scope names none; the default `aud` a request gets",
    },
    issuer: {
      kind: {
        type: "string",
        pattern: /^[\x21-\x7e]+$/,
        what: "printable ASCII without spaces",
        maxLength: 256,
      },
      doc: "`iss` claim of issued tokens",
    },
    skew_s: { kind: { type: "integer", min: 0, max: 300 }, doc: "clock skew allowed when verifying tokens" },
  },
  limits: {
    max_frame_bytes: {
      kind: { type: "integer", min: 1024, max: 1 << 20 },
      doc: "largest socket frame accepted (checked before allocation)",
    },
    max_connections: {
      kind: { type: "integer", min: 1, max: 65_536 },
      doc: "concurrent client connections being identified or served (refused ones still closing are not counted)",
    },
    max_connections_per_uid: {
      kind: { type: "integer", min: 1, max: 65_536 },
      doc: "concurrent connections of one caller uid, counted from accept (SO_PEERCRED); more are refused busy",
    },
    read_timeout_ms: {
      kind: ms(100, 600_000),
      doc: "deadline for a started frame to arrive whole, and for identifying a new connection's peer",
    },
    idle_timeout_ms: {
      kind: ms(1000, 86_400_000),
      doc: "a connection without a complete request for this long, and none in flight, is closed; at least read_timeout_ms",
    },
    requests_per_second_per_uid: {
      kind: { type: "integer", min: 1, max: 1_000_000 },
      doc: "sustained request rate per caller uid",
    },
    burst_per_uid: {
      kind: { type: "integer", min: 1, max: 10_000_000 },
      doc: "request burst per caller uid (token bucket size)",
    },
    denial_window_ms: {
      kind: ms(100, 3_600_000),
      doc: "a caller's first denial for a reason is recorded in full; its repeats within this window are counted into one `denial_repeats` entry when it ends (docs/lineage.md)",
    },
  },
  metrics: {
    socket: {
      kind: { type: "path", maxBytes: MAX_SOCKET_PATH_BYTES },
      doc: "Unix socket serving `GET /metrics` (Prometheus text format)",
      absent: "no metrics socket",
    },
    socket_mode: { kind: { type: "mode" }, doc: "permission bits of the metrics socket (octal string)" },
    port: {
      kind: { type: "integer", min: 1, max: 65_535 },
      doc: "TCP port on 127.0.0.1 serving `GET /metrics`; needs AF_INET in the unit (docs/operations.md)",
      absent: "no metrics port",
    },
  },
  hsm: {
    require: {
      kind: { type: "enum", values: ROOT_MODES },
      doc: "roots of trust each epoch needs: a TPM quote, an HSM signature over the epoch binding, or both (docs/hsm.md)",
    },
    module: { kind: path, doc: "PKCS#11 module (.so) of the HSM" },
    token_label: {
      kind: {
        type: "string",
        pattern: PKCS11_LABEL,
        what: "printable ASCII without leading or trailing spaces",
        maxLength: 32,
      },
      doc: "label of the PKCS#11 token (tokens are found by label: slot ids change)",
    },
    key_label: {
      kind: {
        type: "string",
        pattern: PKCS11_LABEL,
        what: "printable ASCII without leading or trailing spaces",
        maxLength: 128,
      },
      doc: "CKA_LABEL of the signing key pair (`execgate enroll --hsm` makes it)",
    },
    pin_file: {
      kind: path,
      doc: "file holding the token's user PIN (never put the PIN itself in this file)",
      absent: "`pin_credential`",
    },
    pin_credential: {
      kind: {
        type: "string",
        pattern: /^(?!\.\.?$)[A-Za-z0-9_.@-]+$/,
        what: "a systemd credential name",
        maxLength: 255,
      },
      doc: "systemd credential holding the user PIN, read from `$CREDENTIALS_DIRECTORY/<name>` (outside systemd: `/etc/execgate/credentials/<name>`); execgate.service loads `hsm-pin`",
      absent: "`pin_file`; with neither, HSM modes refuse to start",
    },
    checkpoints: {
      kind: { type: "enum", values: CHECKPOINT_SIGNERS },
      doc: "which hardware key signs lineage checkpoints (both: the TPM key, co-signed by the HSM key)",
      absent: '`hsm` when require is "hsm", else `tpm`',
    },
    token_signer: {
      kind: { type: "enum", values: TOKEN_ISSUERS },
      doc: "what signs tokens: the in-memory Ed25519 key bound into each epoch, or the HSM key directly (ES256 or EdDSA)",
    },
  },
};

export const SECTIONS = Object.keys(DEFAULTS) as ConfigSection[];
