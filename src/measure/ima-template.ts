import { ExecgateError } from "../core/errors.js";

/**
 * IMA template descriptors — Linux security/integrity/ima/ima_template.c
 * (`supported_templates`) and Documentation/security/IMA-templates.rst. A template is a list
 * of field ids; a custom template's name is its field list ("d-ng|n-ng|sig").
 */
export const TEMPLATES: Readonly<Record<string, readonly string[]>> = {
  ima: ["d", "n"],
  "ima-ng": ["d-ng", "n-ng"],
  "ima-ngv2": ["d-ngv2", "n-ng"],
  "ima-sig": ["d-ng", "n-ng", "sig"],
  "ima-sigv2": ["d-ngv2", "n-ng", "sig"],
  "ima-buf": ["d-ng", "n-ng", "buf"],
  "ima-modsig": ["d-ng", "n-ng", "sig", "d-modsig", "modsig"],
  "evm-sig": ["d-ng", "n-ng", "evmsig", "xattrnames", "xattrlengths", "xattrvalues", "iuid", "igid", "imode"],
};

/** Field ids the kernel knows (ima_template.c `supported_fields`). */
export const FIELD_IDS = new Set([
  "d",
  "n",
  "d-ng",
  "d-ngv2",
  "n-ng",
  "sig",
  "buf",
  "d-modsig",
  "modsig",
  "evmsig",
  "xattrnames",
  "xattrlengths",
  "xattrvalues",
  "iuid",
  "igid",
  "imode",
]);

/** IMA_EVENT_NAME_LEN_MAX (ima.h): the legacy `ima` template pads `n` to 256 bytes when hashing. */
export const IMA_EVENT_NAME_LEN_MAX = 255;
export const MAX_TEMPLATE_NAME = 255;

export function templateFields(name: string): readonly string[] {
  const known = TEMPLATES[name];
  if (known) return known;
  const ids = name.split("|");
  for (const id of ids) {
    if (!FIELD_IDS.has(id)) throw new ExecgateError("unsupported", `unknown IMA template or field '${name}'`);
  }
  return ids;
}
