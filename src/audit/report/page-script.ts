/**
 * The report's one inline script (plain browser JavaScript, pinned by its SHA-256 in the CSP).
 * It decodes the embedded payload, renders one view at a time and one page of rows at a time,
 * builds every node with textContent (no markup from the bundle is ever parsed), and re-verifies
 * inclusion paths and the checkpoint signature with WebCrypto. It makes no request.
 */
export const REPORT_SCRIPT = String.raw`"use strict";
(function () {
  var raw = atob(document.getElementById("payload").textContent.trim());
  var u8 = new Uint8Array(raw.length);
  for (var k = 0; k < raw.length; k++) u8[k] = raw.charCodeAt(k);
  var D = JSON.parse(new TextDecoder().decode(u8));
  var PAGE = 50;
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) for (var a in attrs) {
      if (a === "text") el.textContent = attrs[a];
      else if (a === "onclick") el.addEventListener("click", attrs[a]);
      else el.setAttribute(a, attrs[a]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }
  function row(cells, cls) {
    var tr = h("tr", cls ? { class: cls } : null);
    cells.forEach(function (c) { tr.appendChild(h("td", null, c)); });
    return tr;
  }
  function table(head, rows) {
    var t = h("table", null, h("tr", null));
    head.forEach(function (x) { t.firstChild.appendChild(h("th", { text: x })); });
    rows.forEach(function (r) { t.appendChild(r); });
    return t;
  }
  function ix(i) {
    return h("a", { class: "ix", "data-index": String(i), onclick: function () { showProof(i); } }, "#" + i);
  }
  function hex2b(s) { var b = new Uint8Array(s.length / 2); for (var i = 0; i < b.length; i++) b[i] = parseInt(s.substr(i * 2, 2), 16); return b; }
  function b2hex(b) { var s = ""; for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16); return s; }
  function b64(s) { var r = atob(s), b = new Uint8Array(r.length); for (var i = 0; i < r.length; i++) b[i] = r.charCodeAt(i); return b; }
  function cat(a, b, c) { var o = new Uint8Array(a.length + b.length + (c ? c.length : 0)); o.set(a, 0); o.set(b, a.length); if (c) o.set(c, a.length + b.length); return o; }
  function sha(b) { return crypto.subtle.digest("SHA-256", b).then(function (x) { return new Uint8Array(x); }); }

  var views = {};
  var nav = document.getElementById("nav");
  function addView(id, title) {
    var s = h("section", { id: "view-" + id });
    document.getElementById("main").appendChild(s);
    var b = h("button", { id: "tab-" + id, onclick: function () { select(id); } }, title);
    nav.appendChild(b);
    views[id] = { section: s, button: b };
    return s;
  }
  function select(id) {
    for (var v in views) {
      views[v].section.className = v === id ? "on" : "";
      views[v].button.className = v === id ? "on" : "";
    }
  }

  // Verdict: every check audit verify ran, then what this page re-did itself.
  var V = addView("verdict", "Verdict");
  var ok = D.verdict.ok;
  V.appendChild(h("div", { id: "verdict", class: "verdict " + (ok ? "PASS" : "FAIL") }, ok ? "PASS: the bundle verifies" : "FAIL: the bundle does not verify"));
  if (!ok && D.verdict.failures.length > 0) {
    var f0 = D.verdict.failures[0];
    V.appendChild(h("p", { id: "first-failure" }, "First failure: " + f0.line));
  }
  V.appendChild(h("p", null, "Checked by execgate audit verify when this report was made (" + D.generated.by + ", " + D.generated.entries + " entries, " + D.generated.key + "):"));
  V.appendChild(table(["check", "result", "failures"], D.verdict.checks.map(function (c) {
    return row([c.name, h("span", { class: c.result }, c.result), c.failures.join("; ")], c.result === "FAIL" ? "bad" : null);
  })));
  if (D.verdict.failures.length > 0)
    V.appendChild(table(["#", "failure"], D.verdict.failures.map(function (f, i) {
      return row([String(i + 1), f.index !== undefined ? h("span", null, ix(f.index), " " + f.line) : f.line], "bad");
    })));
  var redo = h("div", { id: "page-checks" }, h("h3", null, "Re-done in this page (WebCrypto)"));
  V.appendChild(redo);
  var redoList = h("ul");
  redo.appendChild(redoList);

  // Checkpoint signature, re-verified here with the log key the report carries.
  function derToRaw(der) {
    var p = 2; if (der[1] & 0x80) p = 2 + (der[1] & 0x7f);
    function int() { p++; var len = der[p++]; var v = der.slice(p, p + len); p += len; while (v.length > 32 && v[0] === 0) v = v.slice(1); var o = new Uint8Array(32); o.set(v, 32 - v.length); return o; }
    return cat(int(), int());
  }
  function verifyNote() {
    var cp = D.checkpoint;
    if (!cp.note || !cp.vkey) return Promise.resolve({ ok: false, why: "no checkpoint note or log key in the bundle" });
    // name "+" hex8 "+" base64: the base64 may itself contain "+".
    var vk = cp.vkey.trim(), i1 = vk.indexOf("+"), i2 = vk.indexOf("+", i1 + 1);
    var name = vk.slice(0, i1), keyId = vk.slice(i1 + 1, i2), kb = b64(vk.slice(i2 + 1));
    var type = kb[0], key = kb.slice(1);
    var cut = cp.note.lastIndexOf("\n\n");
    var text = cp.note.slice(0, cut + 1);
    var sigs = cp.note.slice(cut + 2).split("\n").filter(function (l) { return l.indexOf("\u2014 " + name + " ") === 0; });
    if (sigs.length === 0) return Promise.resolve({ ok: false, why: "no signature line by " + name });
    var sig = b64(sigs[0].split(" ")[2]);
    if (b2hex(sig.slice(0, 4)) !== keyId) return Promise.resolve({ ok: false, why: "key id differs from the log key's" });
    var msg = new TextEncoder().encode(text);
    var p;
    if (type === 1) p = crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]).then(function (k) { return crypto.subtle.verify({ name: "Ed25519" }, k, sig.slice(4), msg); });
    else if (type === 2) p = crypto.subtle.importKey("spki", key, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]).then(function (k) { return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k, derToRaw(sig.slice(4)), msg); });
    else return Promise.resolve({ ok: false, why: "unknown signature type " + type });
    return p.then(function (v) { return { ok: v, alg: type === 1 ? "Ed25519" : "ECDSA P-256", why: v ? "" : "signature does not verify" }; },
      function (e) { return { ok: false, why: "WebCrypto: " + e }; });
  }
  var noteResult = verifyNote().then(function (r) {
    redoList.appendChild(h("li", { id: "page-note" }, h("span", { class: r.ok ? "PASS" : "FAIL" }, r.ok ? "PASS" : "FAIL"),
      " checkpoint signature (" + (r.alg || "?") + ") over the note, with the log key " + (D.checkpoint.vkeyPinned ? "pinned by the auditor" : "from the bundle") + (r.why ? ": " + r.why : "")));
    return r;
  });
  redoList.appendChild(h("li", null, "inclusion of an entry: opened in the Proof view, recomputed from the entry's bytes up to the checkpoint root"));
  redoList.appendChild(h("li", { class: "muted" }, "not re-done here (done by the CLI at generation): segments and records, every entry's decoding, consistency between checkpoints, tiles, the EK → AK → signing key chain, quotes and tokens"));

  // Timeline: runs and epochs, with executions and denials.
  var T = addView("timeline", "Timeline");
  D.runs.forEach(function (r, n) {
    T.appendChild(h("h3", null, "Run " + (n + 1) + ": ", ix(r.startIndex), " started " + r.start + " (" + r.startReason + ")" + (r.stop ? ", stopped " + r.stop + " (" + r.stopReason + ")" : ", no stop entry")));
    T.appendChild(table(["epoch", "seq", "time", "quote", "policy digest", "boot", "PCRs", "allows", "denials"], r.epochs.map(function (e) {
      var pcrs = h("details", null, h("summary", null, e.pcrs.length + " values"), h("pre", { text: e.pcrs.map(function (p) { return p.bank + ":" + p.index + " " + p.value; }).join("\n") }));
      return row([ix(e.index), String(e.seq), e.time, h("span", { class: e.verified ? "PASS" : "FAIL" }, e.verified ? "verified" : "FAILED " + (e.reason || "")), h("code", { text: e.policyDigest || "-" }), e.boot, pcrs, String(e.allows), String(e.denials)], e.verified ? null : "bad");
    })));
  });
  T.appendChild(h("h3", null, "Executions (token lifecycle)"));
  // Only the latest executions as DOM rows; the Entries view pages through all of them.
  var shownX = D.executions.slice(-4 * PAGE);
  if (shownX.length < D.executions.length) T.appendChild(h("p", { class: "muted" }, "the latest " + shownX.length + " of " + D.executions.length + " executions; search a token id in Entries for the others"));
  T.appendChild(table(["token", "decided", "request", "allow", "issued", "redeemed", "report", "exit", "uid", "scope"], shownX.map(function (x) {
    function l(i) { return i === undefined ? h("span", { class: "FAIL" }, "missing") : ix(i); }
    return row([h("code", { class: "token", text: x.tokenId }), x.time, l(x.request), ix(x.decision), l(x.issued), l(x.redeemed), l(x.report), x.exitCode === undefined ? (x.signal || "-") : String(x.exitCode), x.uid === undefined ? "-" : String(x.uid), x.scope || "-"]);
  })));

  // Denials grouped by reason, with who and why.
  var N = addView("denials", "Denials");
  D.denials.forEach(function (g) {
    N.appendChild(h("h3", { class: "reason" }, g.reason + " (" + g.count + ")"));
    N.appendChild(table(["entry", "time", "who", "why"], g.entries.slice(0, PAGE).map(function (i) {
      var e = D.entries[i];
      return row([ix(i), e.time, h("span", { class: "who" }, e.who || "-"), h("span", { class: "why" }, e.why || "-")]);
    })));
    if (g.entries.length > PAGE) N.appendChild(h("p", { class: "muted" }, (g.entries.length - PAGE) + " more: Entries view, search " + g.reason));
  });
  if (D.denials.length === 0) N.appendChild(h("p", null, "No denials."));

  // Executors: who ran what.
  var X = addView("executors", "Executors");
  X.appendChild(table(["executable (SHA-256)", "uid", "executions", "scopes", "denials"], D.executors.map(function (x) {
    return row([h("code", { text: x.exe }), x.uids.join(", "), String(x.runs), x.scopes.join(", "), String(x.denials)]);
  })));

  // Entries: search and filters, one page at a time.
  var E = addView("entries", "Entries");
  var q = h("input", { id: "search", type: "search", placeholder: "search: type, who, why, token, scope, index", size: "50" });
  var typeSel = h("select", { id: "type-filter" }, h("option", { value: "" }, "all types"));
  D.types.forEach(function (t) { typeSel.appendChild(h("option", { value: t }, t)); });
  var denOnly = h("input", { id: "denials-only", type: "checkbox" });
  var prev = h("button", { id: "prev" }, "◀"), next = h("button", { id: "next" }, "▶"), info = h("span", { id: "page-info" });
  E.appendChild(h("p", null, q, " ", typeSel, " ", h("label", null, denOnly, " denials only"), " ", prev, " ", info, " ", next));
  var body = h("div", { id: "entry-rows" });
  E.appendChild(body);
  var hits = [], page = 0;
  function run() {
    var needle = q.value.trim().toLowerCase(), ty = typeSel.value, dn = denOnly.checked;
    hits = [];
    for (var i = 0; i < D.entries.length; i++) {
      var e = D.entries[i];
      if (ty && e.type !== ty) continue;
      if (dn && !e.denied) continue;
      if (needle && e.s.indexOf(needle) < 0) continue;
      hits.push(i);
    }
    page = 0; draw();
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(hits.length / PAGE));
    info.textContent = hits.length + " entries, page " + (page + 1) + "/" + pages;
    body.textContent = "";
    body.appendChild(table(["#", "time", "type", "who", "what"], hits.slice(page * PAGE, page * PAGE + PAGE).map(function (i) {
      var e = D.entries[i];
      return row([ix(i), e.time, e.type, e.who || "", e.why || ""], e.denied ? "bad" : null);
    })));
  }
  q.addEventListener("input", run); typeSel.addEventListener("change", run); denOnly.addEventListener("change", run);
  prev.addEventListener("click", function () { if (page > 0) { page--; draw(); } });
  next.addEventListener("click", function () { if ((page + 1) * PAGE < hits.length) { page++; draw(); } });
  run();

  // Proof viewer: the entry decoded, its inclusion path recomputed here, the checkpoint and key chain.
  var P = addView("proof", "Proof");
  var pin = h("input", { id: "proof-index", type: "number", min: "0", value: "0" });
  P.appendChild(h("p", null, "Entry index ", pin, " ", h("button", { id: "proof-go", onclick: function () { showProof(Number(pin.value)); } }, "Show")));
  var out = h("div", { id: "proof" });
  P.appendChild(out);
  function inclusion(index, size, leaf, path, root) {
    // RFC 9162 §2.1.3.2, recomputed with WebCrypto SHA-256.
    if (index >= size) return Promise.resolve(false);
    var fn = index, sn = size - 1, r = Promise.resolve(leaf), k = 0;
    for (k = 0; k < path.length; k++) {
      if (sn === 0) return Promise.resolve(false);
      (function (p, left) {
        r = r.then(function (cur) { return sha(left ? cat(new Uint8Array([1]), p, cur) : cat(new Uint8Array([1]), cur, p)); });
      })(hex2b(path[k]), (fn & 1) === 1 || fn === sn);
      if ((fn & 1) === 1 || fn === sn) {
        if ((fn & 1) === 0) while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      }
      fn >>= 1; sn >>= 1;
    }
    return r.then(function (cur) { return sn === 0 && b2hex(cur) === root; });
  }
  function showProof(i) {
    select("proof"); pin.value = String(i); out.textContent = "";
    var e = D.entries[i];
    if (!e) { out.appendChild(h("p", { class: "FAIL" }, "no entry " + i + " in this report")); return; }
    var res = h("p", { id: "proof-result" }, "verifying…");
    out.appendChild(h("h3", null, "Entry #" + i + " (" + e.type + ")"));
    out.appendChild(res);
    if (e.cli) out.appendChild(h("p", { id: "proof-cli", class: e.cli.ok ? "PASS" : "FAIL" }, "CLI at generation: " + (e.cli.ok ? "inclusion PASS" : "FAIL: " + e.cli.why)));
    out.appendChild(h("pre", { id: "proof-entry", text: JSON.stringify(e.view, null, 2) }));
    out.appendChild(h("h4", null, "Inclusion path to the checkpoint (size " + D.checkpoint.size + ", root " + D.checkpoint.root + ")"));
    out.appendChild(h("pre", { id: "proof-path", text: (e.path || []).join("\n") || "(none)" }));
    out.appendChild(h("h4", null, "Checkpoint note"));
    out.appendChild(h("pre", { id: "proof-note", text: D.checkpoint.note || "(none)" }));
    out.appendChild(h("h4", null, "Key chain: EK certificate → AK → checkpoint signing key"));
    out.appendChild(table(["file", "SHA-256", "checked by"], D.keychain.map(function (k) { return row([k.file, h("code", { text: k.sha256 }), k.role]); })));
    out.appendChild(h("pre", { text: "log key (" + (D.checkpoint.vkeyPinned ? "pinned --vkey" : "the bundle's log.vkey") + "): " + (D.checkpoint.vkey || "-") }));
    if (!e.b || !e.path) { res.className = "FAIL"; res.textContent = "FAIL: " + (e.cli ? e.cli.why : "no proof"); return; }
    var bytes = b64(e.b);
    sha(cat(new Uint8Array([0]), bytes)).then(function (leaf) {
      return inclusion(i, D.checkpoint.size, leaf, e.path, D.checkpoint.root).then(function (incl) {
        return noteResult.then(function (n) {
          var pass = incl && n.ok;
          res.className = pass ? "PASS" : "FAIL";
          res.textContent = (pass ? "PASS" : "FAIL") + ": inclusion re-verified in this page " + (incl ? "PASS" : "FAIL") + " (leaf " + b2hex(leaf).slice(0, 16) + "…), checkpoint signature re-verified in this page " + (n.ok ? "PASS" : "FAIL");
        });
      });
    });
  }
  window.addEventListener("hashchange", function () { var m = /^#entry-(\d+)$/.exec(location.hash); if (m) showProof(Number(m[1])); });
  select("verdict");
  document.body.setAttribute("data-ready", "1");
})();
`;
