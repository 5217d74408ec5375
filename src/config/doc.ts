import { DEFAULTS } from "./defaults.js";
import { type KeyKind, type KeySpec, SCHEMA, SECTIONS } from "./schema.js";

/**
 * The key reference of docs/config.md, rendered from DEFAULTS and SCHEMA so the two cannot
 * drift (test/unit/config-docs.test.ts compares it with the file).
 */
export const DOC_BEGIN =
  "<!-- BEGIN config reference: generated from src/config/defaults.ts and schema.ts -->";
export const DOC_END = "<!-- END config reference -->";

function range(kind: KeyKind): string {
  switch (kind.type) {
    case "integer":
      return `integer ${kind.min}..${kind.max}`;
    case "string":
      return `string, ${kind.what}, ≤ ${kind.maxLength} chars`;
    case "path":
      return `path, ≤ ${kind.maxBytes} bytes resolved`;
    case "enum":
      return kind.values.map((v) => `\`${v}\``).join(", ");
    case "mode":
      return "octal string ≤ 0777";
    case "handle":
      return "persistent handle 0x81xxxxxx";
    case "pcrs":
      return "PCR selection bank:i,j[+bank:…]";
  }
}

function defaultText(v: unknown, spec: KeySpec): string {
  if (v === undefined) return `unset: ${spec.absent ?? "off"}`;
  return `\`${typeof v === "string" ? JSON.stringify(v) : String(v)}\``;
}

export function renderConfigReference(): string {
  const lines = [DOC_BEGIN];
  for (const section of SECTIONS) {
    const specs = SCHEMA[section] as Record<string, KeySpec>;
    const defaults = DEFAULTS[section] as Record<string, unknown>;
    lines.push(
      "",
      `### \`[${section}]\``,
      "",
      "| key | default | type and range | meaning |",
      "| --- | --- | --- | --- |",
    );
    for (const [k, spec] of Object.entries(specs)) {
      lines.push(`| \`${k}\` | ${defaultText(defaults[k], spec)} | ${range(spec.kind)} | ${spec.doc} |`);
    }
  }
  lines.push("", DOC_END);
  return lines.join("\n");
}
