import { type KeyObject, sign } from "node:crypto";
import { Worker } from "node:worker_threads";
import { ExecgateError } from "../core/errors.js";
import { COSE_ALG } from "./cose.js";
import type { TokenSigner } from "./signer.js";

/**
 * Token requests in flight above which the in-memory key signs on the worker thread: the thread's
 * round trip (two thread wake-ups) costs more than the signature while few requests wait, and
 * its tokens span more group commits; when requests queue up it frees the event loop.
 */
export const THREAD_SIGNING_ABOVE = 16;

/**
 * The in-memory Ed25519 issuer key as a TokenSigner: on the event loop while few requests wait,
 * on `thread` (when given) above THREAD_SIGNING_ABOVE. Its failures are internal_error.
 */
export function memoryTokenSigner(
  privateKey: KeyObject,
  publicKey: KeyObject,
  thread?: SigningThread,
): TokenSigner {
  const type = privateKey.asymmetricKeyType;
  return {
    alg: COSE_ALG.EdDSA,
    publicKey,
    failure: "internal_error",
    ...(type === "ed25519" ? {} : { unusable: `the issuer key is ${String(type)}, not Ed25519` }),
    sign: (tbs, waiting) =>
      thread && waiting > THREAD_SIGNING_ABOVE
        ? thread.sign(tbs)
        : new Uint8Array(sign(null, tbs, privateKey)),
    close: async () => thread?.close(),
  };
}

/**
 * Ed25519 signatures on a worker thread. Signing is about half of the daemon's CPU time per token:
 * on the event loop it delays every other request, on a worker it runs on the other core.
 * Requests made in one turn of the event loop go to the worker as one message, and come back as
 * one. The private key is handed to the worker once (KeyObjects are cloned across threads, never
 * written anywhere).
 *
 * A worker that fails or exits rejects every signature in flight ("internal") and is not
 * restarted: the caller's denials say why, and the daemon's issuer key dies with the process
 * anyway.
 */
const WORKER_SOURCE = `
const { sign } = require("node:crypto");
const { parentPort, workerData } = require("node:worker_threads");
const key = workerData.key;
parentPort.on("message", (batch) => {
  const out = new Array(batch.length);
  for (let i = 0; i < batch.length; i++) {
    try {
      out[i] = sign(null, batch[i], key);
    } catch (e) {
      out[i] = String(e && e.message || e);
    }
  }
  parentPort.postMessage(out);
});
`;

interface Waiter {
  readonly resolve: (sig: Uint8Array) => void;
  readonly reject: (e: unknown) => void;
}

export class SigningThread {
  private readonly worker: Worker;
  /** Requests of the current turn, not yet sent. */
  private queued: { readonly tbs: Uint8Array; readonly waiter: Waiter }[] = [];
  /** Batches sent, answered in order. */
  private readonly sent: Waiter[][] = [];
  private failed: ExecgateError | undefined;

  constructor(privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== "ed25519")
      throw new ExecgateError("internal", "the signing thread takes an Ed25519 private key");
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { key: privateKey } });
    this.worker.unref();
    this.worker.on("message", (sigs: (Uint8Array | string)[]) => this.answer(sigs));
    this.worker.on("error", (e) => this.fail(`the signing thread failed: ${e.message}`));
    this.worker.on("exit", (code) => this.fail(`the signing thread exited (${code})`));
  }

  /** The Ed25519 signature of `message` (as crypto.sign(null, message, key) gives it). */
  sign(message: Uint8Array): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      if (this.queued.length === 0) queueMicrotask(() => this.flush());
      this.queued.push({ tbs: message, waiter: { resolve, reject } });
    });
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    if (this.failed) {
      for (const b of batch) b.waiter.reject(this.failed);
      return;
    }
    this.sent.push(batch.map((b) => b.waiter));
    this.worker.ref(); // answers pending: keep the process alive for them
    this.worker.postMessage(batch.map((b) => b.tbs));
  }

  private answer(sigs: readonly (Uint8Array | string)[]): void {
    const waiters = this.sent.shift();
    if (this.sent.length === 0) this.worker.unref();
    if (!waiters) return;
    for (let i = 0; i < waiters.length; i++) {
      const s = sigs[i];
      if (s instanceof Uint8Array) waiters[i]!.resolve(new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
      else waiters[i]!.reject(new ExecgateError("internal", `token signature failed: ${String(s)}`));
    }
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = new ExecgateError("internal", why);
    for (const batch of this.sent.splice(0)) for (const w of batch) w.reject(this.failed);
    for (const b of this.queued.splice(0)) b.waiter.reject(this.failed);
  }

  async close(): Promise<void> {
    this.fail("the signing thread was closed");
    await this.worker.terminate();
  }
}
