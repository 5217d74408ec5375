/**
 * The lineage explorer's read model (pure: no I/O, no clock). API:
 *   explainEntry(index, bytes, lookup) → ExploredEntry   one entry decoded, refs followed through
 *       lookup(index) → bytes, with caller (uid, gid, pid, exe, unit), denial (reason, code,
 *       detail, repeats), scope, token id, decision index and epoch id pulled up from its refs
 *   matches(entry, QueryFilter) · parseWhen(text, nowMs)  the `audit query` filters and times
 *   TokenChainCollector(cti).observe(entry) → result(): TokenLinks  one execution's chain by token id
 *   LineageSummary.observe(entry): runs, epochs, executions by token id, denials by reason
 *   epochView(epochEntry) · tokenClaimsOf(tokenBytes) · toJson(value)
 * The shell (daemon/explore-bundle.ts) reads a bundle's entries in order and looks refs up.
 */
export * from "./chain.js";
export * from "./entry-view.js";
export * from "./filter.js";
export * from "./json.js";
export * from "./summary.js";
