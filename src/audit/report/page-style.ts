/** The report's stylesheet, inlined and pinned by its SHA-256 in the page's CSP. */
export const REPORT_CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#111;background:#fafafa}
header{padding:12px 20px;background:#222;color:#fff}
nav button{margin-right:6px;padding:4px 10px;border:1px solid #888;background:#fff;cursor:pointer}
nav button.on{background:#ffd;font-weight:bold}
main{padding:12px 20px}
section{display:none}section.on{display:block}
.PASS{color:#070;font-weight:bold}.FAIL{color:#b00;font-weight:bold}.SKIP{color:#777}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
tr.bad{background:#fdd}code,pre{font:12px/1.3 ui-monospace,monospace;word-break:break-all;white-space:pre-wrap}
.verdict{font-size:20px;padding:8px;border:2px solid currentColor;display:inline-block;margin:6px 0}
a.ix{cursor:pointer;color:#04c;text-decoration:underline}
.muted{color:#666}
`;
