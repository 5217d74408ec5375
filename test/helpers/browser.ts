import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

/**
 * Debian's chromium (scripts/setup.sh installs it) driven by playwright-core, headless, with a
 * fresh profile and every background service that could make a request switched off.
 */
export const CHROMIUM = "/usr/bin/chromium";

export interface TestBrowser {
  readonly context: BrowserContext;
  /** Opens a file:// page and records every request it makes (none are expected). */
  open(path: string): Promise<{ page: Page; requests: string[] }>;
  dispose(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  const profile = await mkdtemp(join(tmpdir(), "execgate-chromium-"));
  // A persistent context is playwright's way to give the fresh profile (--user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    async open(path) {
      const page = await context.newPage();
      const requests: string[] = [];
      const fileUrl = `file://${path}`;
      page.on("request", (r) => {
        if (r.url() !== fileUrl) requests.push(r.url());
      });
      await page.goto(fileUrl);
      await page.waitForSelector("body[data-ready='1']");
      return { page, requests };
    },
    async dispose() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
