import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { ExecgateError } from "../core/errors.js";
import type { ProcSource } from "./procfs.js";
import { procError } from "./procfs.js";

/**
 * SHA-256 of the image a process runs, cached per file version. Every lookup opens
 * /proc/<pid>/exe afresh (which resolves to the file the process really executes, even when
 * its path has since been replaced or unlinked) and fstat()s it; the cached digest is used
 * only when device, inode, size, mtime and ctime all match. A write to the file moves ctime
 * (utimes() cannot set it back), so a rewritten executable is hashed again — on local
 * filesystems with fine enough timestamps. A FUSE server (mountable inside a user namespace)
 * answers stat and read as it likes, and a same-size rewrite within one coarse ctime tick goes
 * unseen; IMA's measurements are the mitigation (docs/threat-model.md).
 */

export const DEFAULT_EXE_CACHE_ENTRIES = 1024;
/**
 * Largest executable hashed: a bigger one fails identification. Hashing runs on the event loop,
 * about 1 ms per chunk between asynchronous reads, so this bounds the work one peer can ask for.
 */
export const MAX_EXE_BYTES = 512 * 1024 * 1024;
const HASH_CHUNK = 1 << 20;
/**
 * Hashes of new file versions run at most this many at once; later ones wait their turn (and
 * give up at their deadline without starting). Callers could otherwise start one per connection
 * with executables made to defeat the cache (large sparse files, touched between connections):
 * each holds a descriptor and a 1 MiB buffer and takes event-loop time. Cached lookups never wait.
 */
export const MAX_CONCURRENT_HASHES = 2;

/** The file a process executes, as identified by fstat on /proc/<pid>/exe. */
export interface ExeFile {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export interface ExeDigest {
  readonly file: ExeFile;
  /** lowercase hex SHA-256 of the whole file */
  readonly sha256: string;
}

function fileOf(st: BigIntStats): ExeFile {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

function sameVersion(a: ExeFile, b: ExeFile): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

export class ExeDigestCache {
  private readonly entries = new Map<string, ExeDigest>();
  /** Hashes under way, by file version: concurrent lookups of one new executable hash it once. */
  private readonly inFlight = new Map<string, Promise<string>>();
  private readonly maxEntries: number;
  private readonly maxBytes: bigint;
  private readonly maxHashes: number;
  private hashing = 0;
  /** Lookups waiting for a hash slot, oldest first. */
  private readonly hashQueue: (() => void)[] = [];
  /** Lookups served from the cache / by hashing; for tests and metrics. */
  hits = 0;
  misses = 0;

  constructor(opts: { maxEntries?: number; maxBytes?: number; maxHashes?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? DEFAULT_EXE_CACHE_ENTRIES;
    this.maxBytes = BigInt(opts.maxBytes ?? MAX_EXE_BYTES);
    this.maxHashes = opts.maxHashes ?? MAX_CONCURRENT_HASHES;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new ExecgateError("internal", "ExeDigestCache: maxEntries must be a positive integer");
    }
  }

  /**
   * Digest of the image `pid` runs now. Throws ExecgateError if it cannot be read completely, is
   * larger than `maxBytes`, or `signal` aborts first (`timeout`). An abort stops only this
   * lookup's wait: the hash, shared by every lookup of that file version, runs to the end (at
   * most `maxBytes`) and is cached, so a slow first lookup does not leave the file unhashed for
   * every later one. A lookup waiting for a hash slot (MAX_CONCURRENT_HASHES) gives up at its
   * deadline without starting one.
   */
  async digest(pid: number, proc: ProcSource, signal?: AbortSignal): Promise<ExeDigest> {
    const handle = await proc.openExe(pid);
    let handedOver = false;
    try {
      const file = await this.checkedFile(handle, pid);
      const key = `${file.dev}:${file.ino}`;
      const known = this.entries.get(key);
      if (known && sameVersion(known.file, file)) {
        this.hits++;
        this.remember(key, known); // refresh recency
        return known;
      }
      this.misses++;
      const version = `${key}:${file.size}:${file.mtimeNs}:${file.ctimeNs}`;
      let pending = this.inFlight.get(version);
      if (!pending) {
        // A lookup already past its deadline starts no hash nobody would wait for.
        if (signal?.aborted) throw deadlinePassed(pid);
        await this.hashSlot(signal, pid);
        // Another lookup of this version may have started its hash while this one waited.
        pending = this.inFlight.get(version);
        if (pending) this.releaseHashSlot();
        else {
          handedOver = true; // the hash closes the handle and frees the slot when it is done
          pending = this.hashVersion(handle, pid, file, key, version);
        }
      }
      return { file, sha256: await untilAborted(pending, signal, pid) };
    } finally {
      if (!handedOver) await handle.close().catch(() => undefined);
    }
  }

  private async checkedFile(handle: FileHandle, pid: number): Promise<ExeFile> {
    const before = await this.fstat(handle, pid);
    if (!before.isFile()) {
      throw new ExecgateError("verification_failed", `peer ${pid}: executable is not a regular file`, {
        check: "peer_exe_not_file",
        pid,
      });
    }
    if (before.size > this.maxBytes) {
      throw new ExecgateError(
        "verification_failed",
        `peer ${pid}: executable of ${before.size} bytes is larger than ${this.maxBytes}`,
        { check: "peer_exe_too_large", pid },
      );
    }
    return fileOf(before);
  }

  /** Hashes one file version through `handle` (then closed), shared by its lookups while it runs. */
  private hashVersion(
    handle: FileHandle,
    pid: number,
    file: ExeFile,
    key: string,
    version: string,
  ): Promise<string> {
    const task = this.hashAndRemember(handle, pid, file, key).finally(() => {
      this.inFlight.delete(version);
      this.releaseHashSlot();
      return handle.close().catch(() => undefined);
    });
    // Every waiter may stop waiting (deadline): a failure must not go unhandled then.
    task.catch(() => undefined);
    this.inFlight.set(version, task);
    return task;
  }

  /** Waits for one of the maxHashes slots; a signal that aborts meanwhile leaves the queue (timeout). */
  private hashSlot(signal: AbortSignal | undefined, pid: number): Promise<void> {
    if (this.hashing < this.maxHashes) {
      this.hashing++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const take = () => {
        signal?.removeEventListener("abort", giveUp);
        this.hashing++;
        resolve();
      };
      const giveUp = () => {
        const i = this.hashQueue.indexOf(take);
        if (i >= 0) this.hashQueue.splice(i, 1);
        reject(deadlinePassed(pid));
      };
      this.hashQueue.push(take);
      signal?.addEventListener("abort", giveUp, { once: true });
    });
  }

  private releaseHashSlot(): void {
    this.hashing--;
    this.hashQueue.shift()?.();
  }

  /** Lookups waiting for a hash slot now; for tests. */
  get waitingForHash(): number {
    return this.hashQueue.length;
  }

  /** The file's SHA-256, cached, if it did not change while it was read. */
  private async hashAndRemember(
    handle: FileHandle,
    pid: number,
    file: ExeFile,
    key: string,
  ): Promise<string> {
    const sha256 = await this.hash(handle, pid);
    if (!sameVersion(file, fileOf(await this.fstat(handle, pid)))) {
      throw new ExecgateError("verification_failed", `peer ${pid}: executable changed while it was hashed`, {
        check: "peer_exe_changed",
        pid,
      });
    }
    this.remember(key, { file, sha256 });
    return sha256;
  }

  private remember(key: string, digest: ExeDigest): void {
    this.entries.delete(key);
    this.entries.set(key, digest);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }

  private async fstat(handle: FileHandle, pid: number): Promise<BigIntStats> {
    try {
      return await handle.stat({ bigint: true });
    } catch (e) {
      throw procError(e, "exe", pid);
    }
  }

  private async hash(handle: FileHandle, pid: number): Promise<string> {
    const h = createHash("sha256");
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    let position = 0;
    try {
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, HASH_CHUNK, position);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        position += bytesRead;
      }
    } catch (e) {
      throw procError(e, "exe", pid);
    }
    return h.digest("hex");
  }
}

function deadlinePassed(pid: number): ExecgateError {
  return new ExecgateError("timeout", `peer ${pid}: identification deadline passed`);
}

/** `p`, unless `signal` aborts first: then this caller stops waiting (`timeout`), `p` goes on. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, pid: number): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(deadlinePassed(pid));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(deadlinePassed(pid));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
