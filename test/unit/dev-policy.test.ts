import { describe, expect, it } from "vitest";
import { devPolicyToml } from "../../src/dev/files.js";
import { parsePolicy } from "../../src/policy/load.js";

const PCR = (byte: string) => byte.repeat(32);
// The swtpm's PCRs as dev up reads them: sha256 0–7 and 10 (the default quote selection).
const CURRENT = {
  sha256: Object.fromEntries(["0", "1", "2", "3", "4", "5", "6", "7", "10"].map((i) => [i, PCR("ab")])),
};

describe("the dev up policy", () => {
  it("pins the current PCRs but PCR 10, which IMA moves (as enroll --golden-out does)", () => {
    const text = devPolicyToml({ uid: 1000, pcrs: CURRENT });
    const pinned = [...text.matchAll(/^"(\d+)" = /gm)].map((m) => m[1]);
    expect(pinned).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
    expect(text).toContain(`"7" = ["${PCR("ab")}"]`);
    expect(() => parsePolicy(text, "/nonexistent", "dev policy")).not.toThrow();
  });
});
