import { cp, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import { frameRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../src/lineage/record.js";
import { launchBrowser, type TestBrowser } from "../helpers/browser.js";
import { execgate } from "../helpers/cli.js";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/** Screenshots of each view, kept as test artifacts (git ignores test-artifacts/). */
const ARTIFACTS = resolve("test-artifacts/audit-report");

describeTpm("audit report: one offline HTML file, opened in Debian's chromium", () => {
  let d: TestDaemon;
  let b: TestBrowser;
  let bundle: string;
  let trust: string;
  const tokenIds: string[] = [];
  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    d = await startTestDaemon();
    const c = await d.client();
    try {
      for (let i = 0; i < 2; i++) {
        const t = await c.requestToken({ scope: "dev", argv: ["/bin/echo", String(i)] });
        const r = await c.redeem(t.token);
        tokenIds.push(toHex(r.tokenId));
        await c.report({ tokenId: r.tokenId, exitStatus: i, durationMs: 5 });
      }
      await c.requestToken({ scope: "nope", argv: ["/bin/true"] }).catch(() => undefined);
    } finally {
      await c.close();
    }
    trust = join(d.dir, "ek-ca.pem");
    await writeFile(
      trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    bundle = join(d.dir, "bundle");
    expect((await execgate(["audit", "export", "--out", bundle, "--json"], d.env)).code).toBe(0);
    b = await launchBrowser();
  });
  afterAll(async () => {
    await b?.dispose();
    await d?.dispose();
  });

  it("a verifying bundle: PASS, timeline, a denial's who and why, a token's chain, a proof PASS, no request", async () => {
    const out = join(d.dir, "report.html");
    const r = await execgate(["audit", "report", bundle, "--out", out, "--trust", trust]);
    expect(r.stderr).toMatch(/^verified: \d+ entries; report written/);
    expect(r.code).toBe(0);
    await cp(out, join(ARTIFACTS, "report.html"));
    const html = await readFile(out, "utf8");
    expect(html).toMatch(
      /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'sha256-/,
    );
    expect(html).not.toMatch(/(src|href)=["']?(https?:|\/\/)/);

    const { page, requests } = await b.open(out);
    expect(await page.textContent("#verdict")).toMatch(/^PASS/);
    await page.screenshot({ path: join(ARTIFACTS, "verdict.png"), fullPage: true });
    // the page re-verified the checkpoint signature itself
    await page.waitForSelector("#page-note");
    expect(await page.textContent("#page-note")).toMatch(
      /^PASS checkpoint signature \((ECDSA P-256|Ed25519)\)/,
    );

    await page.click("#tab-timeline");
    const timeline = await page.textContent("#view-timeline");
    expect(timeline).toMatch(/Run 1: #\d+ started/);
    expect(timeline).toMatch(/verified/);
    for (const t of tokenIds) expect(timeline).toContain(t);
    // each token's chain is complete: request, allow, issued, redeemed, report
    expect(await page.locator("#view-timeline td span.FAIL", { hasText: "missing" }).count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, "timeline.png"), fullPage: true });

    await page.click("#tab-denials");
    const den = page.locator("#view-denials");
    expect(await den.locator("h3.reason").allTextContents()).toContain("scope_not_allowed (1)");
    const who = await den.locator(".who").first().textContent();
    expect(who).toMatch(new RegExp(`^uid ${process.getuid?.()} gid \\d+ pid \\d+ exe sha256:[0-9a-f]{16}…`));
    expect(await den.locator(".why").first().textContent()).toMatch(/^DENY scope_not_allowed .*scope=nope/);
    await page.screenshot({ path: join(ARTIFACTS, "denials.png"), fullPage: true });

    await page.click("#tab-executors");
    expect(await page.textContent("#view-executors")).toMatch(/[0-9a-f]{64}/);
    await page.screenshot({ path: join(ARTIFACTS, "executors.png"), fullPage: true });

    await page.click("#tab-entries");
    await page.fill("#search", tokenIds[0]!);
    const info = await page.textContent("#page-info");
    // the allow, issued, redeemed and report of that token
    expect(Number(info?.split(" ")[0])).toBeGreaterThanOrEqual(4);
    await page.fill("#search", "");
    await page.check("#denials-only");
    expect(await page.textContent("#entry-rows")).toContain("DENY scope_not_allowed");
    await page.screenshot({ path: join(ARTIFACTS, "entries.png"), fullPage: true });

    // the proof of the first token's allow decision: recomputed in the page
    await page.click("#tab-timeline");
    await page
      .locator("#view-timeline code.token", { hasText: tokenIds[0]! })
      .locator("xpath=../..")
      .locator("a.ix")
      .nth(1)
      .click();
    await page.locator("#proof-result", { hasText: /^(PASS|FAIL)/ }).waitFor();
    expect(await page.textContent("#proof-result")).toMatch(
      /^PASS: inclusion re-verified in this page PASS .*checkpoint signature re-verified in this page PASS/,
    );
    expect(await page.textContent("#proof-cli")).toBe("CLI at generation: inclusion PASS");
    expect(await page.textContent("#proof-entry")).toContain(`"tokenId": "${tokenIds[0]}"`);
    expect(await page.textContent("#proof-note")).toMatch(/^\S+\n\d+\n/);
    expect(await page.textContent("#view-proof")).toContain("enrollment/signing-key.certify.attest");
    await page.screenshot({ path: join(ARTIFACTS, "proof.png"), fullPage: true });
    expect(requests).toEqual([]);
    await page.close();
  });

  it("a tampered bundle: audit report exits 1, still writes the report, which shows FAIL at the entry", async () => {
    const bad = join(d.dir, "tampered");
    await cp(bundle, bad, { recursive: true });
    const [seg] = await readdir(join(bad, "segments"));
    const p = join(bad, "segments", seg!);
    const bytes = await readFile(p);
    bytes[bytes.length - 5]! ^= 0x01;
    await writeFile(p, bytes);
    const out = join(d.dir, "tampered.html");
    const r = await execgate(["audit", "report", bad, "--out", out, "--trust", trust]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^FAILED: the bundle does not verify: \d+ entries; report written/);
    expect((await stat(out)).size).toBeGreaterThan(0);
    const { page, requests } = await b.open(out);
    expect(await page.textContent("#verdict")).toMatch(/^FAIL/);
    expect(await page.textContent("#first-failure")).toMatch(/^First failure: record .*bad record at offset/);
    await page.screenshot({ path: join(ARTIFACTS, "tampered-verdict.png"), fullPage: true });
    expect(requests).toEqual([]);
    await page.close();
  });

  it("an entry rewritten with a valid record CRC: the report shows FAIL at that entry's proof", async () => {
    const bad = join(d.dir, "rewritten");
    await cp(bundle, bad, { recursive: true });
    const [seg] = await readdir(join(bad, "segments"));
    const p = join(bad, "segments", seg!);
    const bytes = new Uint8Array(await readFile(p));
    // The denied request's scope "nope" becomes "nopf": same length, still valid CBOR, CRC redone.
    let index = -1;
    for (let at = SEGMENT_HEADER_BYTES, i = 0; at < bytes.length; i++) {
      const len = new DataView(bytes.buffer, at, 4).getUint32(0);
      const payload = bytes.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len);
      const k = Buffer.from(payload).indexOf("nope");
      if (k >= 0 && index < 0) {
        payload[k + 3] = "f".charCodeAt(0);
        frameRecord(Uint8Array.from(payload), bytes, at);
        index = i;
      }
      at += RECORD_HEADER_BYTES + len;
    }
    expect(index).toBeGreaterThan(0);
    await writeFile(p, bytes);
    const out = join(d.dir, "rewritten.html");
    const r = await execgate(["audit", "report", bad, "--out", out, "--trust", trust]);
    expect(r.code).toBe(1);
    await cp(out, join(ARTIFACTS, "rewritten.html"));
    const { page, requests } = await b.open(out);
    expect(await page.textContent("#verdict")).toMatch(/^FAIL/);
    // the root cause first: the entry after it names it by a leaf hash it no longer has
    expect(await page.textContent("#first-failure")).toMatch(
      new RegExp(`^First failure: backref entry ${index + 1}: .* differs from entry ${index}$`),
    );
    await page.click("#tab-entries");
    await page.fill("#search", "scope=nopf");
    await page
      .locator("#entry-rows a.ix", { hasText: `#${index}` })
      .first()
      .click();
    await page.locator("#proof-result", { hasText: /^(PASS|FAIL)/ }).waitFor();
    expect(await page.textContent("#proof-result")).toMatch(/^FAIL: inclusion re-verified in this page FAIL/);
    expect(await page.textContent("#proof-cli")).toMatch(/^CLI at generation: FAIL/);
    await page.screenshot({ path: join(ARTIFACTS, "tampered-proof.png"), fullPage: true });
    expect(requests).toEqual([]);
    await page.close();
  });
});
