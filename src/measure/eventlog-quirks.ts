import type { EventLog } from "./eventlog-parse.js";
import type { PcrMismatch } from "./eventlog-replay.js";
import { EV } from "./eventlog-types.js";
import { digest, type HashAlg } from "./hash.js";

/**
 * A known firmware bug whose effect on the log is understood. A quirk adds the digests the
 * firmware extended without logging; it is applied only when the plain replay does not match
 * the quote and the quirk makes it match (eventlog-replay.ts compareWithQuote), and its use is
 * recorded so policy and auditors can see it.
 */
export interface Quirk {
  readonly id: string;
  readonly description: string;
  /** Cheap pre-check: could this quirk explain these mismatches? */
  applicable(log: EventLog, mismatches: readonly PcrMismatch[]): boolean;
  /** PCR index → digests to extend after the log's own events, for one bank. */
  extends(alg: HashAlg): ReadonlyMap<number, readonly Uint8Array[]>;
}

const enc = new TextEncoder();
const EBS_INVOCATION = enc.encode("Exit Boot Services Invocation");
const EBS_SUCCESS = enc.encode("Exit Boot Services Returned with Success");

function hasEfiAction(log: EventLog, pcr: number, text: Uint8Array): boolean {
  return log.events.some(
    (e) =>
      e.eventType === EV.EV_EFI_ACTION &&
      e.pcrIndex === pcr &&
      e.data.length === text.length &&
      e.data.every((b, i) => b === text[i]),
  );
}

export const QUIRKS: readonly Quirk[] = [
  {
    // PFP §8.2.4 / §10.4.4: firmware measures "Exit Boot Services Invocation" and
    // "Exit Boot Services Returned with Success" (EV_EFI_ACTION, PCR 5) when the OS calls
    // ExitBootServices(), after the log was handed over — some firmware extends them but
    // the log the OS reads never contains them (go-attestation eventlog_workarounds.go).
    id: "ebs_events_missing",
    description: "ExitBootServices EV_EFI_ACTION events extended into PCR 5 but not logged",
    applicable: (log, mismatches) =>
      mismatches.every((m) => m.pcr === 5) &&
      !hasEfiAction(log, 5, EBS_INVOCATION) &&
      !hasEfiAction(log, 5, EBS_SUCCESS),
    extends: (alg) => new Map([[5, [digest(alg, EBS_INVOCATION), digest(alg, EBS_SUCCESS)]]]),
  },
];
