import type { HsmKey } from "../hsm/hsm.js";
import type { Histogram } from "./histogram.js";

/**
 * Times every signature of an opened HSM key (epoch bindings, checkpoints, tokens) into
 * `latency`, failures included. HsmKey comes from a factory (HsmKey.open), so the instance's
 * sign is wrapped rather than subclassed; nothing else about the key changes.
 */
export function timeHsmSigning(
  key: HsmKey,
  latency: Histogram,
  monoNs: () => bigint = process.hrtime.bigint,
): void {
  const sign = key.sign.bind(key);
  key.sign = async (message: Uint8Array): Promise<Uint8Array> => {
    const t0 = monoNs();
    try {
      return await sign(message);
    } finally {
      latency.observe(Number(monoNs() - t0) / 1e9);
    }
  };
}
