import { randomBytes } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { bytesEqual, fromHex, toHex } from "../core/hex.js";
import { makeDirs } from "../core/mkdirs.js";
import { ioError, replaceFileDurably } from "./fsutil.js";
import { HASH_SIZE, sha256 } from "./hash.js";

/** Largest blob we store or read back (event logs and IMA lists are well below this). */
export const MAX_BLOB_BYTES = 64 << 20;

/**
 * Content-addressed store for evidence too large for a lineage entry. A blob lives in
 * `<dir>/<sha256 hex>`; entries reference it by digest, and reads re-check the digest.
 */
export class BlobStore {
  constructor(readonly dir: string) {}

  static async open(dir: string): Promise<BlobStore> {
    try {
      await makeDirs(dir, 0o750);
    } catch (e) {
      throw ioError(`blob store ${dir}`, e);
    }
    return new BlobStore(dir);
  }

  pathOf(digest: Uint8Array): string {
    if (digest.length !== HASH_SIZE) throw new ExecgateError("malformed", "blob digest must be 32 bytes");
    return join(this.dir, toHex(digest));
  }

  /** Stores bytes (idempotent) and returns their SHA-256 digest once they are durable. */
  async put(bytes: Uint8Array): Promise<Uint8Array> {
    if (bytes.length > MAX_BLOB_BYTES) throw new ExecgateError("limit_exceeded", "blob too large");
    const digest = sha256(bytes);
    const final = this.pathOf(digest);
    if (await this.has(digest)) return digest;
    const tmp = join(this.dir, `.tmp-${toHex(randomBytes(8))}`);
    // Durability: write the temp file, fsync it, rename it over the final name, then fsync the
    // directory so the rename itself survives a crash. A crash before the rename leaves only a
    // .tmp-* file, which is never read and is removed by the next put of the same content.
    try {
      await replaceFileDurably(this.dir, tmp, final, bytes);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw ioError(`blob store put ${final}`, e);
    }
    return digest;
  }

  async has(digest: Uint8Array): Promise<boolean> {
    try {
      await stat(this.pathOf(digest));
      return true;
    } catch {
      return false;
    }
  }

  /** Reads a blob and checks it still hashes to its name. */
  async get(digest: Uint8Array): Promise<Uint8Array> {
    const path = this.pathOf(digest);
    let bytes: Uint8Array;
    try {
      const s = await stat(path);
      if (s.size > MAX_BLOB_BYTES) throw new ExecgateError("limit_exceeded", `blob ${path} too large`);
      bytes = new Uint8Array(await readFile(path));
    } catch (e) {
      if (e instanceof ExecgateError) throw e;
      throw ioError(`blob store get ${path}`, e);
    }
    if (!bytesEqual(sha256(bytes), digest)) {
      throw new ExecgateError("verification_failed", `blob ${path} does not match its digest`, {
        check: "blob_digest",
      });
    }
    return bytes;
  }
}

export function blobDigestFromHex(hex: string): Uint8Array {
  const d = fromHex(hex, "blob digest");
  if (d.length !== HASH_SIZE) throw new ExecgateError("malformed", "blob digest must be 32 bytes");
  return d;
}
