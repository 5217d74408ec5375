import type { TpmRunner } from "../runner.js";

export interface TpmFixedProperties {
  /** TPM2_PT_MANUFACTURER as its 4-character vendor id (e.g. "IBM", "IFX", "STM"). */
  readonly manufacturer: string;
  readonly vendor: string;
  /** TPM2_PT_FIRMWARE_VERSION_1 ‖ _2 as 16 hex digits. */
  readonly firmwareVersion: string;
  readonly specRevision: number | undefined;
}

/**
 * tpm2_getcap has no binary output; its YAML lists `TPM2_PT_…:` keys each followed by a
 * `raw: 0x…` line. We read only those raw 32-bit values and decode them ourselves.
 */
export function parseFixedProperties(yaml: string): TpmFixedProperties {
  const raw = new Map<string, number>();
  let key: string | undefined;
  for (const line of yaml.split("\n")) {
    const k = /^(TPM2_PT_[A-Z0-9_]+):\s*$/.exec(line);
    if (k) {
      key = k[1];
      continue;
    }
    const r = /^\s+raw:\s+0x([0-9a-fA-F]{1,8})\s*$/.exec(line);
    if (r && key !== undefined && !raw.has(key)) raw.set(key, Number.parseInt(r[1]!, 16));
  }
  const ascii = (...names: string[]): string =>
    names
      .map((n) => {
        const v = raw.get(n);
        if (v === undefined) return "";
        const b = Buffer.alloc(4);
        b.writeUInt32BE(v >>> 0);
        return b.toString("latin1");
      })
      .join("")
      .replace(/[^\x20-\x7e]/g, "")
      .trim();
  const fw = (n: string): string => (raw.get(n) ?? 0).toString(16).padStart(8, "0");
  return {
    manufacturer: ascii("TPM2_PT_MANUFACTURER"),
    vendor: ascii(
      "TPM2_PT_VENDOR_STRING_1",
      "TPM2_PT_VENDOR_STRING_2",
      "TPM2_PT_VENDOR_STRING_3",
      "TPM2_PT_VENDOR_STRING_4",
    ),
    firmwareVersion: fw("TPM2_PT_FIRMWARE_VERSION_1") + fw("TPM2_PT_FIRMWARE_VERSION_2"),
    specRevision: raw.get("TPM2_PT_REVISION"),
  };
}

export async function readFixedProperties(runner: TpmRunner): Promise<TpmFixedProperties> {
  const { stdout } = await runner.run("tpm2_getcap", ["properties-fixed"]);
  return parseFixedProperties(stdout);
}
