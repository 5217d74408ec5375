/**
 * Event types — TCG PC Client Platform Firmware Profile (PFP) 1.05 §10.4.1, Table 9
 * ("Events"). Names exactly as in the spec.
 */
export const EV = {
  EV_PREBOOT_CERT: 0x00000000,
  EV_POST_CODE: 0x00000001,
  EV_UNUSED: 0x00000002,
  EV_NO_ACTION: 0x00000003,
  EV_SEPARATOR: 0x00000004,
  EV_ACTION: 0x00000005,
  EV_EVENT_TAG: 0x00000006,
  EV_S_CRTM_CONTENTS: 0x00000007,
  EV_S_CRTM_VERSION: 0x00000008,
  EV_CPU_MICROCODE: 0x00000009,
  EV_PLATFORM_CONFIG_FLAGS: 0x0000000a,
  EV_TABLE_OF_DEVICES: 0x0000000b,
  EV_COMPACT_HASH: 0x0000000c,
  EV_IPL: 0x0000000d,
  EV_IPL_PARTITION_DATA: 0x0000000e,
  EV_NONHOST_CODE: 0x0000000f,
  EV_NONHOST_CONFIG: 0x00000010,
  EV_NONHOST_INFO: 0x00000011,
  EV_OMIT_BOOT_DEVICE_EVENTS: 0x00000012,
  EV_POST_CODE2: 0x00000013,
  EV_EFI_EVENT_BASE: 0x80000000,
  EV_EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
  EV_EFI_VARIABLE_BOOT: 0x80000002,
  EV_EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EV_EFI_BOOT_SERVICES_DRIVER: 0x80000004,
  EV_EFI_RUNTIME_SERVICES_DRIVER: 0x80000005,
  EV_EFI_GPT_EVENT: 0x80000006,
  EV_EFI_ACTION: 0x80000007,
  EV_EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EV_EFI_HANDOFF_TABLES: 0x80000009,
  EV_EFI_PLATFORM_FIRMWARE_BLOB2: 0x8000000a,
  EV_EFI_HANDOFF_TABLES2: 0x8000000b,
  EV_EFI_VARIABLE_BOOT2: 0x8000000c,
  EV_EFI_GPT_EVENT2: 0x8000000d,
  EV_EFI_HCRTM_EVENT: 0x80000010,
  EV_EFI_VARIABLE_AUTHORITY: 0x800000e0,
  EV_EFI_SPDM_FIRMWARE_BLOB: 0x800000e1,
  EV_EFI_SPDM_FIRMWARE_CONFIG: 0x800000e2,
} as const;

const NAMES = new Map<number, string>(Object.entries(EV).map(([k, v]) => [v, k]));

export function eventTypeName(t: number): string {
  return NAMES.get(t) ?? `0x${t.toString(16).padStart(8, "0")}`;
}

/** EV_NO_ACTION event data signatures — PFP §10.4.5 (Spec ID), §10.4.5.3 (StartupLocality), SP800-155. */
export const SIG_SPEC_ID_EVENT03 = "Spec ID Event03";
export const SIG_SPEC_ID_EVENT00 = "Spec ID Event00";
export const SIG_STARTUP_LOCALITY = "StartupLocality";
export const SIG_SP800_155 = "SP800-155 Event";
export const SIG_SP800_155_3 = "SP800-155 Event3";

/** The PCR index of EV_NO_ACTION events that are not meant for any PCR (seen in Windows logs). */
export const PCR_INDEX_NONE = 0xffffffff;
/** TPM 2.0 PC Client platforms have 24 PCRs (PC Client PTP §4.2). */
export const MAX_PCR_INDEX = 23;

/**
 * A PCR index written as a key ("7"): decimal without leading zeros, 0..MAX_PCR_INDEX, else
 * undefined. One spelling per PCR, so "7" and "07" cannot both name PCR 7 and one silently
 * replace the other.
 */
export function pcrIndexFromKey(key: string): number | undefined {
  if (!/^(0|[1-9][0-9]?)$/.test(key)) return undefined;
  const i = Number(key);
  return i <= MAX_PCR_INDEX ? i : undefined;
}
