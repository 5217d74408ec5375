import { type KeyObject, randomBytes } from "node:crypto";
import { withDeadline } from "../core/deadline.js";
import { digest } from "../core/digest.js";
import { ExecgateError } from "../core/errors.js";
import { mapPkcs11Error, pkcs11Code } from "./errors.js";
import {
  algorithmFromParams,
  ED25519_OID_PARAMS,
  type HsmKeyAlgorithm,
  P256_PARAMS,
  publicKeyFromToken,
  spkiDer,
} from "./keys.js";
import {
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  type Handle,
  type PKCS11,
  pkcs11js,
} from "./pkcs11.js";

/**
 * One signing key on a PKCS#11 token, found by token label and key label (slot ids change
 * when tokens are initialised or re-plugged). Signing runs on libuv's threadpool
 * (C_SignAsync), over a small pool of sessions so concurrent signatures do not share one.
 *
 * Failure model: any PKCS#11 error during an operation marks the key broken and surfaces as
 * hardware_unavailable. The next operation (at most one attempt per `retryMs`) waits for the
 * operations in flight, re-initialises the module (C_Finalize + C_Initialize: SoftHSM2 only
 * re-reads its token directory then), finds the token and key again and checks the key is the
 * same one it had at start. So a token that comes back is used again without a restart, and a
 * token that never does keeps producing hardware_unavailable — never a crash.
 *
 * A module that never returns (a wedged token or driver) is bounded by `timeoutMs`: each
 * signature fails hardware_unavailable after it, callers queued for a session stop waiting then,
 * and close() stops waiting for it too. The stuck call keeps its session busy; the key counts as
 * broken and is re-opened once that call has returned.
 */
export interface HsmKeyOptions {
  /** Path of the PKCS#11 module (.so). */
  readonly module: string;
  readonly tokenLabel: string;
  readonly keyLabel: string;
  readonly pin: string;
  /** Sessions opened for signing (default 2). */
  readonly sessions?: number;
  /** Minimum interval between re-open attempts after a failure (default 250 ms). */
  readonly retryMs?: number;
  /** Injected clock for the retry interval. */
  readonly now?: () => number;
  /**
   * How long one signature may take, from the call (waiting for a session or a re-open
   * included) to its result, before it fails hardware_unavailable (default 5000 ms).
   */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;

/** `p`, or a rejection with the signal's reason once it aborts: a caller that gave up stops waiting. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** One loaded module per path and process: C_Initialize may run only once at a time per process. */
interface LoadedModule {
  readonly p11: PKCS11;
  /** Bumped at every re-initialisation: sessions of an older generation are gone. */
  generation: number;
}
const modules = new Map<string, LoadedModule>();

function loadModule(path: string): LoadedModule {
  const existing = modules.get(path);
  if (existing) return existing;
  const P = pkcs11js();
  const p11 = new P.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw new ExecgateError(
      "config_invalid",
      `PKCS#11 module ${path} cannot be loaded: ${(e as Error).message}`,
    );
  }
  initialize(p11);
  const m = { p11, generation: 0 };
  modules.set(path, m);
  return m;
}

function initialize(p11: PKCS11): void {
  const P = pkcs11js();
  try {
    // CKF_OS_LOCKING_OK: without it SoftHSM2 disables its locks and C_SignAsync from the
    // threadpool corrupts its heap (docs/hsm.md).
    p11.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (pkcs11Code(e) !== P.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw mapPkcs11Error(e, "C_Initialize");
  }
}

function reinitialize(m: LoadedModule): void {
  try {
    m.p11.C_Finalize();
  } catch {
    // already finalized or the module is in a bad state: initialise again regardless
  }
  m.generation++;
  initialize(m.p11);
}

const trimLabel = (s: string): string => s.replace(/[ \0]+$/, "");

function findSlot(m: LoadedModule, label: string): Handle {
  const found: Handle[] = [];
  for (const slot of m.p11.C_GetSlotList(true)) {
    const info = m.p11.C_GetTokenInfo(slot);
    if (trimLabel(info.label) === label) found.push(slot);
  }
  if (found.length === 0)
    throw new ExecgateError("hardware_unavailable", `no PKCS#11 token labelled ${JSON.stringify(label)}`);
  if (found.length > 1)
    throw new ExecgateError("config_invalid", `several PKCS#11 tokens labelled ${JSON.stringify(label)}`);
  return found[0]!;
}

function login(p11: PKCS11, session: Handle, pin: string): void {
  const P = pkcs11js();
  try {
    p11.C_Login(session, P.CKU_USER, pin);
  } catch (e) {
    if (pkcs11Code(e) !== P.CKR_USER_ALREADY_LOGGED_IN) throw e;
  }
}

function findObjects(p11: PKCS11, session: Handle, template: { type: number; value: unknown }[]): Handle[] {
  p11.C_FindObjectsInit(session, template as Parameters<PKCS11["C_FindObjectsInit"]>[1]);
  try {
    return p11.C_FindObjects(session, 4);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

interface KeyHandles {
  readonly privateKey: Handle;
  readonly publicKey: KeyObject;
  readonly algorithm: HsmKeyAlgorithm;
}

/** Finds the private key and its public half (same CKA_LABEL) and reads the public key. */
function findKeyPair(p11: PKCS11, session: Handle, label: string): KeyHandles | undefined {
  const P = pkcs11js();
  const priv = findObjects(p11, session, [
    { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
    { type: P.CKA_LABEL, value: label },
  ]);
  if (priv.length === 0) return undefined;
  if (priv.length > 1)
    throw new ExecgateError("config_invalid", `several private keys labelled ${JSON.stringify(label)}`);
  const pub = findObjects(p11, session, [
    { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
    { type: P.CKA_LABEL, value: label },
  ]);
  if (pub.length !== 1)
    throw new ExecgateError(
      "config_invalid",
      `HSM key ${JSON.stringify(label)}: expected one public key object`,
    );
  const attrs = p11.C_GetAttributeValue(session, pub[0]!, [
    { type: P.CKA_EC_PARAMS },
    { type: P.CKA_EC_POINT },
  ]);
  const params = attrs[0]?.value;
  const point = attrs[1]?.value;
  if (!(params instanceof Buffer) || !(point instanceof Buffer))
    throw new ExecgateError("unsupported", `HSM key ${JSON.stringify(label)}: not an EC or EdDSA key`);
  return {
    privateKey: priv[0]!,
    publicKey: publicKeyFromToken(new Uint8Array(params), new Uint8Array(point)),
    algorithm: algorithmFromParams(new Uint8Array(params)),
  };
}

interface Session {
  readonly handle: Handle;
  busy: boolean;
}

/** A caller queued for a session. */
interface Waiter {
  readonly resolve: (s: Session) => void;
  readonly reject: (e: ExecgateError) => void;
}

export class HsmKey {
  readonly publicKey: KeyObject;
  readonly algorithm: HsmKeyAlgorithm;
  /** Counters for status and tests. */
  readonly stats = { signatures: 0, failures: 0, reopens: 0 };
  private sessions: Session[] = [];
  private privateKey: Handle;
  private generation: number;
  private broken: ExecgateError | undefined;
  /** The module generation at the last failure: a re-open re-initialises unless it moved on. */
  private failedGeneration = -1;
  private lastAttempt = Number.NEGATIVE_INFINITY;
  private reopening: Promise<void> | undefined;
  private inFlight = 0;
  private drained: (() => void)[] = [];
  private waiting: Waiter[] = [];
  private closed = false;

  private constructor(
    private readonly m: LoadedModule,
    private readonly o: HsmKeyOptions,
    keys: KeyHandles,
    sessions: Session[],
  ) {
    this.publicKey = keys.publicKey;
    this.algorithm = keys.algorithm;
    this.privateKey = keys.privateKey;
    this.sessions = sessions;
    this.generation = m.generation;
  }

  /**
   * Opens the token and finds the key. Throws config_invalid for a wrong PIN, a missing key or
   * an unloadable module, hardware_unavailable when the token is not there.
   */
  static async open(o: HsmKeyOptions): Promise<HsmKey> {
    const m = loadModule(o.module);
    const { keys, sessions } = openSessions(m, o);
    return new HsmKey(m, o, keys, sessions);
  }

  /** True unless the last operation failed and no re-open has succeeded since. */
  get available(): boolean {
    return this.broken === undefined;
  }

  /** SHA-256 of the DER SubjectPublicKeyInfo: the key's id in records and logs. */
  get keyId(): Uint8Array {
    return digest("sha256", spkiDer(this.publicKey));
  }

  /**
   * Signs `message`: ECDSA P-256 hashes it with SHA-256 here and signs the digest with
   * CKM_ECDSA (raw r‖s, 64 bytes); Ed25519 signs the message with CKM_EDDSA (64 bytes).
   */
  async sign(message: Uint8Array): Promise<Uint8Array> {
    const P = pkcs11js();
    const input =
      this.algorithm === "ecdsa-p256"
        ? Buffer.from(digest("sha256", message).buffer)
        : Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    const mechanism = this.algorithm === "ecdsa-p256" ? P.CKM_ECDSA : CKM_EDDSA;
    return withDeadline(
      (signal) =>
        this.withSession(signal, async (session) => {
          this.m.p11.C_SignInit(session, { mechanism }, this.privateKey);
          const sig = await this.m.p11.C_SignAsync(session, input, Buffer.alloc(128));
          if (sig.length !== 64)
            throw new ExecgateError("hardware_error", `HSM returned a ${sig.length}-byte signature`);
          this.stats.signatures++;
          return new Uint8Array(sig);
        }),
      this.timeoutMs,
      () => this.timedOut(),
    );
  }

  /** Closes the sessions (the module stays loaded for the process). */
  async close(): Promise<void> {
    this.closed = true;
    this.failWaiters(new ExecgateError("hardware_unavailable", "HSM key closed"));
    // The sessions are closed once no signature is in flight (closing one a module thread is
    // stuck in could block the event loop in the module too). A signature the module never
    // returns keeps its session busy: stop waits at most one signature's time for it, and the
    // session is left to the process's exit.
    const closed = this.drain().then(() => this.closeSessions());
    await withDeadline(
      () => closed,
      this.timeoutMs,
      () => new ExecgateError("timeout", "HSM signatures still in flight at close"),
    ).catch(() => undefined);
  }

  private get timeoutMs(): number {
    return this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** A signature that did not come in time is a failure like any other: the key is re-opened. */
  private timedOut(): ExecgateError {
    const err = new ExecgateError(
      "hardware_unavailable",
      `HSM ${this.o.tokenLabel}/${this.o.keyLabel}: no signature within ${this.timeoutMs} ms`,
    );
    this.stats.failures++;
    this.markBroken(err);
    return err;
  }

  private markBroken(err: ExecgateError): void {
    if (this.broken) return;
    this.broken = err;
    this.failedGeneration = this.m.generation;
  }

  /** Runs `f` on a session; `signal` aborts when the caller gave up (its deadline passed). */
  private async withSession<T>(signal: AbortSignal, f: (session: Handle) => Promise<T>): Promise<T> {
    if (this.closed) throw new ExecgateError("hardware_unavailable", "HSM key closed");
    // A re-open in progress: wait for it (if it failed, the check below says so).
    while (this.reopening)
      await untilAborted(
        this.reopening.catch(() => undefined),
        signal,
      );
    if (this.broken || this.generation !== this.m.generation) {
      if (!this.broken) this.failedGeneration = -1; // the module was re-initialised under us: just re-open
      await untilAborted(this.reopen(), signal);
    }
    const s = await this.acquire(signal);
    try {
      return await f(s.handle);
    } catch (e) {
      const err = mapPkcs11Error(e, `HSM ${this.o.tokenLabel}/${this.o.keyLabel}`);
      this.stats.failures++;
      this.markBroken(err);
      throw err.code === "config_invalid" ? new ExecgateError("hardware_unavailable", err.message) : err;
    } finally {
      this.release(s);
    }
  }

  /**
   * A free session, marked busy and counted in flight at once (so a re-open's drain cannot
   * miss a caller that was handed a session but has not run yet). None are handed out while a
   * re-open is in progress. A caller whose signal aborts leaves the queue: a session handed to
   * it would never be released.
   */
  private acquire(signal: AbortSignal): Promise<Session> {
    signal.throwIfAborted();
    const free = this.reopening ? undefined : this.sessions.find((s) => !s.busy);
    if (free) {
      free.busy = true;
      this.inFlight++;
      return Promise.resolve(free);
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiting = this.waiting.filter((w) => w !== waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        resolve: (s) => {
          signal.removeEventListener("abort", onAbort);
          resolve(s);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private release(s: Session): void {
    s.busy = false;
    this.inFlight--;
    if (this.inFlight === 0) for (const d of this.drained.splice(0)) d();
    if (!this.reopening) this.serveWaiters();
  }

  private serveWaiters(): void {
    for (const s of this.sessions) {
      if (s.busy) continue;
      const w = this.waiting.shift();
      if (!w) return;
      s.busy = true;
      this.inFlight++;
      w.resolve(s);
    }
  }

  private failWaiters(err: ExecgateError): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  private drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.drained.push(r));
  }

  private reopen(): Promise<void> {
    this.reopening ??= this.doReopen().finally(() => {
      this.reopening = undefined;
    });
    return this.reopening;
  }

  private async doReopen(): Promise<void> {
    const now = (this.o.now ?? Date.now)();
    if (this.broken && now - this.lastAttempt < (this.o.retryMs ?? 250)) throw this.broken;
    this.lastAttempt = now;
    // Nothing may run on the old sessions while the module is finalised under them.
    await this.drain();
    this.closeSessions();
    try {
      // Another key of this module may have re-initialised it since this key failed; else do it here.
      if (this.failedGeneration === this.m.generation) reinitialize(this.m);
      const { keys, sessions } = openSessions(this.m, this.o);
      if (!keys.publicKey.equals(this.publicKey)) {
        for (const s of sessions) this.m.p11.C_CloseSession(s.handle);
        throw new ExecgateError(
          "hardware_unavailable",
          `HSM key ${JSON.stringify(this.o.keyLabel)} is not the key the daemon started with`,
        );
      }
      this.sessions = sessions;
      this.privateKey = keys.privateKey;
      this.generation = this.m.generation;
      this.broken = undefined;
      this.stats.reopens++;
    } catch (e) {
      const err = mapPkcs11Error(e, `HSM ${this.o.tokenLabel}/${this.o.keyLabel} re-open`);
      this.failedGeneration = this.m.generation;
      this.broken =
        err.code === "config_invalid" ? new ExecgateError("hardware_unavailable", err.message) : err;
      this.failWaiters(this.broken);
      throw this.broken;
    }
    // Callers that queued meanwhile take the new sessions (`reopening` is still set here, so
    // serve them explicitly).
    this.serveWaiters();
  }

  private closeSessions(): void {
    for (const s of this.sessions) {
      try {
        if (this.generation === this.m.generation) this.m.p11.C_CloseSession(s.handle);
      } catch {
        // the session is already gone with the token
      }
    }
    this.sessions = [];
  }
}

function openSessions(m: LoadedModule, o: HsmKeyOptions): { keys: KeyHandles; sessions: Session[] } {
  const P = pkcs11js();
  const opened: Handle[] = [];
  try {
    const slot = findSlot(m, o.tokenLabel);
    const n = Math.max(1, o.sessions ?? 2);
    for (let i = 0; i < n; i++) opened.push(m.p11.C_OpenSession(slot, P.CKF_SERIAL_SESSION));
    login(m.p11, opened[0]!, o.pin);
    const keys = findKeyPair(m.p11, opened[0]!, o.keyLabel);
    if (!keys)
      throw new ExecgateError(
        "hardware_unavailable",
        `no private key labelled ${JSON.stringify(o.keyLabel)} on token ${JSON.stringify(o.tokenLabel)}`,
      );
    // Ed25519 needs CKM_EDDSA, which many tokens lack: say so at start, not at the first epoch.
    const mechanism = keys.algorithm === "ed25519" ? CKM_EDDSA : P.CKM_ECDSA;
    if (!m.p11.C_GetMechanismList(slot).includes(mechanism))
      throw new ExecgateError(
        "config_invalid",
        `token ${JSON.stringify(o.tokenLabel)} does not offer ${keys.algorithm === "ed25519" ? "CKM_EDDSA" : "CKM_ECDSA"} for key ${JSON.stringify(o.keyLabel)}`,
      );
    return { keys, sessions: opened.map((handle) => ({ handle, busy: false })) };
  } catch (e) {
    for (const s of opened) {
      try {
        m.p11.C_CloseSession(s);
      } catch {
        // best effort
      }
    }
    throw mapPkcs11Error(e, `HSM token ${JSON.stringify(o.tokenLabel)}`);
  }
}

export interface GenerateKeyOptions {
  readonly module: string;
  readonly tokenLabel: string;
  readonly keyLabel: string;
  readonly pin: string;
  readonly algorithm: HsmKeyAlgorithm;
}

/**
 * `execgate enroll --hsm`: makes a non-extractable signing key pair on the token (token
 * objects, CKA_SENSITIVE, CKA_SIGN only) unless one with that label exists already; returns its
 * public key and whether it was created.
 */
export async function generateHsmKey(
  o: GenerateKeyOptions,
): Promise<{ publicKey: KeyObject; created: boolean }> {
  const P = pkcs11js();
  const m = loadModule(o.module);
  let session: Handle | undefined;
  try {
    session = m.p11.C_OpenSession(findSlot(m, o.tokenLabel), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    login(m.p11, session, o.pin);
    const existing = findKeyPair(m.p11, session, o.keyLabel);
    if (existing) {
      if (existing.algorithm !== o.algorithm)
        throw new ExecgateError(
          "config_invalid",
          `HSM key ${JSON.stringify(o.keyLabel)} exists with another algorithm`,
        );
      return { publicKey: existing.publicKey, created: false };
    }
    const id = randomBytes(8);
    const ed = o.algorithm === "ed25519";
    const common = [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_LABEL, value: o.keyLabel },
      { type: P.CKA_ID, value: id },
    ];
    await m.p11.C_GenerateKeyPairAsync(
      session,
      { mechanism: ed ? CKM_EC_EDWARDS_KEY_PAIR_GEN : P.CKM_EC_KEY_PAIR_GEN },
      [
        ...common,
        { type: P.CKA_KEY_TYPE, value: ed ? CKK_EC_EDWARDS : P.CKK_EC },
        { type: P.CKA_VERIFY, value: true },
        { type: P.CKA_EC_PARAMS, value: Buffer.from(ed ? ED25519_OID_PARAMS : P256_PARAMS) },
      ],
      [
        ...common,
        { type: P.CKA_PRIVATE, value: true },
        { type: P.CKA_SENSITIVE, value: true },
        { type: P.CKA_EXTRACTABLE, value: false },
        { type: P.CKA_SIGN, value: true },
      ],
    );
    const made = findKeyPair(m.p11, session, o.keyLabel);
    if (!made) throw new ExecgateError("hardware_error", "the generated key is not on the token");
    return { publicKey: made.publicKey, created: true };
  } catch (e) {
    throw mapPkcs11Error(e, `HSM token ${JSON.stringify(o.tokenLabel)}`);
  } finally {
    if (session) {
      try {
        m.p11.C_CloseSession(session);
      } catch {
        // best effort
      }
    }
  }
}

export type { HsmKeyAlgorithm } from "./keys.js";
