/**
 * Every default of the daemon configuration file, in one place, spelled as in the file
 * (section → key → value). `undefined` marks an optional key with no default: the feature it
 * configures is off (or, for lineage.dir, derived as `<daemon.state_dir>/lineage`).
 * docs/config.md is checked against this object by test/unit/config-docs.test.ts.
 */
export const DEFAULTS = {
  daemon: {
    socket: "/run/execgate/execgate.sock",
    socket_mode: "0660",
    socket_group: undefined,
    state_dir: "/var/lib/execgate",
    policy: "/etc/execgate/policy.toml",
    log_level: "info",
    boot_id_path: "/proc/sys/kernel/random/boot_id",
  },
  tpm: {
    tcti: "device:/dev/tpmrm0",
    ak_handle: "0x81000010",
    signing_key_handle: "0x81000020",
    pcrs: "sha256:0,1,2,3,4,5,6,7,10",
    timeout_ms: 10_000,
    ek_ca_bundle: undefined,
  },
  attest: {
    epoch_ms: 1000,
    idle_epoch_ms: 10_000,
    max_evidence_age_ms: 5000,
    fresh_wait_ms: undefined,
    eventlog: undefined,
    ima: undefined,
  },
  lineage: {
    dir: undefined,
    checkpoint_ms: 1000,
    segment_bytes: 64 * 1024 * 1024,
  },
  token: {
    audience: "execgate",
    issuer: "execgate",
    skew_s: 0,
  },
  limits: {
    max_frame_bytes: 65_536,
    max_connections: 256,
    max_connections_per_uid: 64,
    read_timeout_ms: 5000,
    idle_timeout_ms: 60_000,
    requests_per_second_per_uid: 1000,
    burst_per_uid: 2000,
    denial_window_ms: 10_000,
  },
  metrics: {
    socket: undefined,
    socket_mode: "0660",
    port: undefined,
  },
  hsm: {
    require: "tpm",
    module: "/usr/lib/softhsm/libsofthsm2.so",
    token_label: "execgate",
    key_label: "execgate-root",
    pin_file: undefined,
    pin_credential: undefined,
    checkpoints: undefined,
    token_signer: "memory",
  },
} as const;

/** lineage.dir when not set: this directory under daemon.state_dir. */
export const LINEAGE_SUBDIR = "lineage";

export type ConfigSection = keyof typeof DEFAULTS;
