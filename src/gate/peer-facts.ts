import { constants as osConstants } from "node:os";
import type { PeerIdentity } from "../peer/index.js";

/** signal(7) names by number, the first name where a number has two (SIGABRT, not SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(osConstants.signals))
  if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name);

/** signal(7) name of signal n ("SIGKILL"); its number in decimal where there is none (real-time signals). */
export function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? String(n);
}

/** The executable digest of a connection's peer as bytes, decoded once per connection. */
const exeDigests = new WeakMap<PeerIdentity, Uint8Array>();
export function exeDigestOf(peer: PeerIdentity): Uint8Array {
  let d = exeDigests.get(peer);
  if (d === undefined) {
    d = new Uint8Array(Buffer.from(peer.exeSha256, "hex"));
    exeDigests.set(peer, d);
  }
  return d;
}
