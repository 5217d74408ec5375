/**
 * The requests and denials among the last `window` entries, in typed rings (no object per
 * entry): what a denial_repeats entry is checked against. An honest denial follows its request
 * closely, and a window's first denial is named when the window closes; older ones are "far".
 */
export interface DenialInfo {
  readonly reason: string | undefined;
  readonly code: string | undefined;
  /** The uid of the request it names; undefined if none; "far" if out of the window or unrepresentable. */
  readonly requestUid: number | undefined | "far";
}

const NONE = -1;
const FAR = -2;

export class RecentCallers {
  /** Request: its uid; denial: its request's uid, NONE or FAR. */
  private uid: Float64Array | undefined;
  /** Denial: 1 + its interned (reason, code). */
  private what: Uint16Array | undefined;
  private readonly ids = new Map<string, number>();
  private readonly names: { reason: string | undefined; code: string | undefined }[] = [];

  constructor(private readonly window = 1 << 21) {}

  private rings() {
    this.uid ??= new Float64Array(this.window);
    this.what ??= new Uint16Array(this.window);
    return { uid: this.uid, what: this.what };
  }

  request(index: number, uid: number | bigint): void {
    const r = this.rings();
    const at = index % this.window;
    r.uid[at] = typeof uid === "number" ? uid : FAR;
    r.what[at] = 0;
  }

  /** A denial at `index`; `requestIndex` is the request it names, if any (an earlier entry). */
  denial(index: number, reason: string | undefined, code: string | undefined, requestIndex?: number): void {
    const r = this.rings();
    const key = `${reason ?? ""}\u0000${code ?? ""}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.names.length;
      this.names.push({ reason, code });
      this.ids.set(key, id);
    }
    const at = index % this.window;
    r.uid[at] =
      requestIndex === undefined
        ? NONE
        : requestIndex <= index - this.window
          ? FAR
          : r.uid[requestIndex % this.window]!;
    r.what[at] = id + 1;
  }

  /** Any other entry at `index`: clears its slot. */
  other(index: number): void {
    if (this.uid === undefined) return;
    const r = this.rings();
    const at = index % this.window;
    r.what[at] = 0;
  }

  /** The denial at `index`, seen before `current`; "far" out of the window; undefined if none. */
  denialAt(index: number, current: number): DenialInfo | "far" | undefined {
    if (index < 0 || index >= current || this.what === undefined) return undefined;
    if (index <= current - this.window) return "far";
    const at = index % this.window;
    const what = this.what[at]!;
    if (what === 0) return undefined;
    const n = this.names[what - 1]!;
    const uid = this.uid![at]!;
    return { ...n, requestUid: uid === NONE ? undefined : uid === FAR ? "far" : uid };
  }
}
