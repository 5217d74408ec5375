import { type KeyObject, randomBytes } from "node:crypto";
import { type QuoteOutput, quote } from "./ops/attest.js";
import type { TpmRunner } from "./runner.js";
import type { PcrSelection } from "./structures/pcr-selection.js";
import { parsePcrsFile } from "./structures/pcrs-file.js";
import { type QuoteVerification, verifyQuote } from "./verify-quote.js";

/** One quote over a fresh 32-byte nonce, verified here: what a remote verifier would do per request. */
export async function freshQuote(
  runner: TpmRunner,
  o: { akHandle: number; akPublic: KeyObject; selection: PcrSelection },
): Promise<{ nonce: Uint8Array; quote: QuoteOutput; verification: QuoteVerification }> {
  const nonce = new Uint8Array(randomBytes(32));
  const q = await quote(runner, { akHandle: o.akHandle, selection: o.selection, qualifyingData: nonce });
  const verification = verifyQuote({
    attest: q.attest,
    signature: q.signature,
    akPublic: o.akPublic,
    expectedQualifyingData: nonce,
    expectedSelection: o.selection,
    pcrValues: parsePcrsFile(q.pcrsFile).values,
  });
  return { nonce, quote: q, verification };
}
