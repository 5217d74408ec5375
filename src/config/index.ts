export type { Config, ResolvedDocument } from "./config.js";
export { canonicalJson, configDigest, configFromToml, parseConfig, resolvedDocument } from "./config.js";
export { type ConfigSection, DEFAULTS, LINEAGE_SUBDIR } from "./defaults.js";
export { loadConfig, MAX_CONFIG_BYTES } from "./load.js";
export { type KeyKind, type KeySpec, LOG_LEVELS, type LogLevel, SCHEMA } from "./schema.js";
