import { createHash } from "node:crypto";
import { REPORT_SCRIPT } from "./page-script.js";
import { REPORT_CSS } from "./page-style.js";

/**
 * The report as one HTML file (pure): the stylesheet and script inline, each allowed by its
 * SHA-256 in a Content-Security-Policy that allows nothing else (no fetch, no image, no frame,
 * no form target), and the data as base64 JSON in a non-executable script element.
 */
export function cspHash(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

export const REPORT_CSP = (): string =>
  [
    "default-src 'none'",
    `script-src ${cspHash(REPORT_SCRIPT)}`,
    `style-src ${cspHash(REPORT_CSS)}`,
    "img-src 'none'",
    "connect-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");

function escapeText(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderReport(title: string, payload: unknown): string {
  const data = Buffer.from(JSON.stringify(payload), "utf8").toString("base64");
  return [
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP()}">`,
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeText(title)}</title>`,
    `<style>${REPORT_CSS}</style>`,
    "</head><body>",
    `<header><strong>execgate lineage report</strong> <span>${escapeText(title)}</span><nav id="nav"></nav></header>`,
    '<main id="main"></main>',
    `<script type="application/octet-stream" id="payload">${data}</script>`,
    `<script>${REPORT_SCRIPT}</script>`,
    "</body></html>",
    "",
  ].join("\n");
}
