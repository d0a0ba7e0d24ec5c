/* infrawatch operations console: hash router, API client, inline-SVG charts, pages.
 * Every piece of data is put on the page as text (textContent / createTextNode / SVG attributes):
 * messages and stack traces come from applications and must never become markup. */
"use strict";
(function () {
  const t = (k) => window.I18N.t(k);
  const $ = (sel, root) => (root || document).querySelector(sel);
  const main = () => document.getElementById("main");
  const COLORS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c"];
  const SVGNS = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------ DOM helpers (text only, never HTML)

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.assign(e.dataset, v);
        else if (k === "style") Object.assign(e.style, v);
        else if (k === "href") e.setAttribute("href", safeHref(v));
        else if (k === "value") e.value = v;
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    append(e, children);
    return e;
  }

  function append(e, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(e, c);
      else if (c instanceof Node) e.appendChild(c);
      else e.appendChild(document.createTextNode(String(c)));
    }
    return e;
  }

  function safeHref(v) {
    const s = String(v);
    return s.startsWith("#") || s.startsWith("/") ? s : "#";
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  // ------------------------------------------------------------------ formatting

  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const d = digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
    return Number(v).toFixed(d);
  }
  function fmtPct(v) { return v === null || v === undefined || !isFinite(v) ? "–" : fmtNum(v, 1) + "%"; }
  function fmtBytes(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0, x = Math.abs(v);
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (v < 0 ? "-" : "") + fmtNum(x, x >= 100 || i === 0 ? 0 : 1) + " " + u[i];
  }
  function fmtSecs(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s < 0.001) return fmtNum(s * 1e6, 0) + " µs";
    if (s < 1) return fmtNum(s * 1000, s < 0.01 ? 2 : s < 0.1 ? 1 : 0) + " ms";
    return fmtNum(s, 2) + " s";
  }
  function fmtDuration(s) {
    if (!isFinite(s) || s < 0) return "–";
    const zh = window.I18N.lang !== "en";
    const parts = [];
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) parts.push(d + (zh ? "天" : "d"));
    if (h && parts.length < 2) parts.push(h + (zh ? "小时" : "h"));
    if (!d && m && parts.length < 2) parts.push(m + (zh ? "分" : "m"));
    if (!parts.length) parts.push(Math.floor(s) + (zh ? "秒" : "s"));
    return parts.join(zh ? "" : " ");
  }
  function fmtAgo(ts) {
    if (!ts) return t("common.never");
    const s = Math.max(0, Date.now() / 1000 - ts);
    return window.I18N.lang === "en" ? fmtDuration(s) + " " + t("common.ago") : fmtDuration(s) + t("common.ago");
  }
  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(ts, withDate) {
    if (!ts) return "–";
    const d = new Date(ts * 1000);
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (withDate === false) return hm;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm;
  }
  function fmtAxisTime(ts, range) {
    const d = new Date(ts * 1000);
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return range > 86400 * 1.5 ? pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + (range > 86400 * 8 ? "" : " " + hm) : hm;
  }
  const FORMATS = { pct: fmtPct, bytes: fmtBytes, Bps: (v) => fmtBytes(v) + "/s", num: (v) => fmtNum(v), secs: fmtSecs };

  // ------------------------------------------------------------------ API client

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function token() { try { return localStorage.getItem("iw.token") || ""; } catch (e) { return ""; } }

  async function api(path, opts) {
    const o = opts || {};
    const headers = { Accept: "application/json" };
    const tok = token();
    if (tok) headers.Authorization = "Bearer " + tok;
    if (o.body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, { method: o.method || "GET", headers, body: o.body !== undefined ? JSON.stringify(o.body) : undefined, cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, t("health.down"));
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const msg = data && typeof data.error === "string" ? data.error : r.status + " " + r.statusText;
      if (r.status === 401) showTokenBanner("token.needed");
      else if (r.status === 403) showTokenBanner("token.denied");
      throw new ApiError(r.status, msg);
    }
    return data;
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") u.set(k, v);
    return u.toString();
  }

  function errorBox(err, what) {
    if (err && err.status === 404 && what !== undefined) {
      return el("div", { class: "panel notice not-enabled" }, el("strong", { text: t("common.not_enabled") }), " · ", what || "", " (404)");
    }
    return el("div", { class: "panel notice error" }, el("strong", { text: t("common.error") }), ": ", String((err && err.message) || err));
  }

  // ------------------------------------------------------------------ banner, token, health

  function showTokenBanner(key) {
    const b = document.getElementById("banner");
    clear(b);
    append(b, [el("span", { text: t(key) }), " ", el("button", { type: "button", text: t("token.enter"), onclick: openToken })]);
    b.hidden = false;
  }
  function hideBanner() { document.getElementById("banner").hidden = true; }

  function openToken() {
    const d = document.getElementById("token-dialog");
    $("#token-input").value = token();
    if (typeof d.showModal === "function") d.showModal(); else d.setAttribute("open", "");
  }
  function closeToken() {
    const d = document.getElementById("token-dialog");
    if (typeof d.close === "function") d.close(); else d.removeAttribute("open");
  }
  function saveToken(v) {
    try { if (v) localStorage.setItem("iw.token", v); else localStorage.removeItem("iw.token"); } catch (e) { /* private mode */ }
    updateTokenButton();
    hideBanner();
    render();
  }
  function updateTokenButton() {
    const b = document.getElementById("btn-token");
    b.textContent = t("token.button") + (token() ? " ✓" : "");
    b.title = token() ? t("token.set") : "";
  }

  async function refreshHealth() {
    const h = document.getElementById("health");
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      const ok = r.ok;
      h.className = "health " + (ok ? "ok" : "bad");
      h.title = ok ? t("health.ok") : t("health.bad");
      h.textContent = ok ? t("health.ok") : t("health.bad");
    } catch (e) {
      h.className = "health bad";
      h.textContent = t("health.down");
    }
  }

  // ------------------------------------------------------------------ charts (inline SVG)

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function niceBytes(v) {
    let p = 1;
    while (v / p >= 1024) p *= 1024;
    const x = v / p;
    for (const m of [4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]) if (m >= x) return m * p;
    return 1024 * p;
  }

  function sparkline(points, opts) {
    const o = opts || {};
    const w = o.width || 120, h = o.height || 28;
    const s = svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "aria-hidden": "true" });
    if (!points || points.length < 2) return s;
    const t0 = points[0][0], t1 = points[points.length - 1][0];
    const max = o.max !== undefined ? o.max : Math.max(...points.map((p) => p[1])) || 1;
    const x = (ts) => ((ts - t0) / ((t1 - t0) || 1)) * (w - 2) + 1;
    const y = (v) => h - 2 - (Math.min(v, max) / (max || 1)) * (h - 4);
    const d = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
    const last = points[points.length - 1][1];
    const color = o.color || (last >= 90 ? "#dc2626" : last >= 75 ? "#d97706" : "#2563eb");
    s.appendChild(svg("path", { d: d + ` L${x(t1).toFixed(1)} ${h - 1} L${x(t0).toFixed(1)} ${h - 1} Z`, fill: color, "fill-opacity": "0.12", stroke: "none" }));
    s.appendChild(svg("path", { d, fill: "none", stroke: color, "stroke-width": "1.5", "stroke-linejoin": "round" }));
    return s;
  }

  /** series: [{name, points:[[ts,v]...]}]; opts: {start, end, unit, max, height} */
  function lineChart(series, opts) {
    const W = 640, H = opts.height || 200, L = 66, R = 10, T = 10, B = 24;
    const wrap = el("div", { class: "chart" });
    const has = series.some((s) => s.points && s.points.length);
    if (!has) { wrap.appendChild(el("div", { class: "empty", text: t("host.no_data") })); return wrap; }
    const start = opts.start, end = opts.end, range = end - start;
    let vmax = 0;
    for (const s of series) for (const p of s.points) if (p[1] > vmax) vmax = p[1];
    const ymax = opts.max !== undefined ? Math.max(opts.max, vmax) : (opts.unit === "bytes" || opts.unit === "Bps") ? niceBytes(vmax * 1.05) : niceMax(vmax * 1.05);
    const fmt = FORMATS[opts.unit || "num"];
    const x = (ts) => L + ((ts - start) / (range || 1)) * (W - L - R);
    const y = (v) => T + (1 - v / (ymax || 1)) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
    for (let i = 0; i <= 4; i++) {
      const v = (ymax / 4) * i, yy = y(v);
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }));
      root.appendChild(svg("text", { x: L - 6, y: yy + 4, class: "ylab", "text-anchor": "end" }, fmt(v).replace(/\.0(?=\D|$)/, "")));
    }
    const nx = 6;
    for (let i = 0; i <= nx; i++) {
      const ts = start + (range / nx) * i;
      root.appendChild(svg("text", { x: x(ts), y: H - 6, class: "xlab", "text-anchor": i === 0 ? "start" : i === nx ? "end" : "middle" }, fmtAxisTime(ts, range)));
    }
    series.forEach((s, idx) => {
      s.color = s.color || COLORS[idx % COLORS.length];
      const pts = s.points;
      if (!pts.length) return;
      let gap = Infinity;
      if (pts.length > 2) {
        const dts = pts.slice(1).map((p, i) => p[0] - pts[i][0]).sort((a, b) => a - b);
        gap = dts[Math.floor(dts.length / 2)] * 3.5;
      }
      let d = "";
      pts.forEach((p, i) => {
        const cmd = i === 0 || p[0] - pts[i - 1][0] > gap ? "M" : "L";
        d += cmd + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
      });
      if (pts.length === 1) root.appendChild(svg("circle", { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 2.5, fill: s.color }));
      root.appendChild(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": "1.6", "stroke-linejoin": "round", "stroke-linecap": "round" }));
    });
    const cursor = svg("line", { x1: 0, x2: 0, y1: T, y2: H - B, class: "cursor", visibility: "hidden" });
    root.appendChild(cursor);
    const overlay = svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent" });
    root.appendChild(overlay);
    const tip = el("div", { class: "tip", hidden: true });
    overlay.addEventListener("mousemove", (ev) => {
      const box = root.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * W;
      const ts = start + ((px - L) / (W - L - R)) * range;
      cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
      clear(tip);
      tip.appendChild(el("div", { class: "tip-time", text: fmtTime(ts) }));
      for (const s of series.slice(0, 12)) {
        if (!s.points.length) continue;
        let best = s.points[0];
        for (const p of s.points) if (Math.abs(p[0] - ts) < Math.abs(best[0] - ts)) best = p;
        tip.appendChild(el("div", null, el("span", { class: "sw", style: { background: s.color } }), s.name + ": ", el("b", { text: fmt(best[1]) })));
      }
      tip.hidden = false;
      const left = ev.clientX - box.left;
      tip.style.left = (left > box.width / 2 ? left - tip.offsetWidth - 12 : left + 12) + "px";
      tip.style.top = "8px";
    });
    overlay.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); tip.hidden = true; });
    wrap.appendChild(root);
    wrap.appendChild(tip);
    const legend = el("div", { class: "legend" });
    for (const s of series) {
      if (!s.points.length) continue;
      const last = s.points[s.points.length - 1][1];
      legend.appendChild(el("span", { class: "li" }, el("span", { class: "sw", style: { background: s.color } }), s.name, " ", el("b", { text: fmt(last) })));
    }
    wrap.appendChild(legend);
    return wrap;
  }

  function barChart(points, opts) {
    const W = 640, H = opts.height || 140, L = 44, R = 10, T = 8, B = 22;
    const wrap = el("div", { class: "chart" });
    if (!points.length) { wrap.appendChild(el("div", { class: "empty", text: t("common.none") })); return wrap; }
    const start = opts.start, end = opts.end, range = end - start, step = opts.step;
    const ymax = niceMax(Math.max(...points.map((p) => p[1])));
    const x = (ts) => L + ((ts - start) / (range || 1)) * (W - L - R);
    const y = (v) => T + (1 - v / ymax) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg" });
    for (let i = 0; i <= 2; i++) {
      const v = (ymax / 2) * i;
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      root.appendChild(svg("text", { x: L - 6, y: y(v) + 4, class: "ylab", "text-anchor": "end" }, fmtNum(v, 0)));
    }
    for (let i = 0; i <= 4; i++) {
      const ts = start + (range / 4) * i;
      root.appendChild(svg("text", { x: x(ts), y: H - 6, class: "xlab", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, fmtAxisTime(ts, range)));
    }
    const bw = Math.max(1.5, ((W - L - R) * step) / (range || 1) - 1);
    for (const [ts, v] of points) {
      const r = svg("rect", { x: x(ts), y: y(v), width: bw, height: Math.max(0.5, H - B - y(v)), class: "bar" });
      r.appendChild(svg("title", null, fmtTime(ts) + " · " + v));
      root.appendChild(r);
    }
    wrap.appendChild(root);
    return wrap;
  }

  function meter(v) {
    if (v === null || v === undefined || !isFinite(v)) return el("span", { class: "muted", text: "–" });
    const cls = v >= 90 ? "crit" : v >= 75 ? "warn" : "ok";
    const bar = el("span", { class: "meter-fill " + cls });
    bar.style.width = Math.max(0, Math.min(100, v)) + "%";
    return el("span", { class: "meter" }, el("span", { class: "meter-track" }, bar), el("span", { class: "meter-val", text: fmtPct(v) }));
  }

  function badge(text, cls) { return el("span", { class: "badge " + (cls || ""), text }); }

  function card(title, ...body) {
    return el("section", { class: "card" }, title ? el("h3", { text: title }) : null, ...body);
  }

  function toolbar(...items) { return el("div", { class: "toolbar" }, ...items); }

  function select(options, value, onchange, attrs) {
    const s = el("select", attrs || null);
    for (const [v, label] of options) s.appendChild(el("option", { value: v, text: label }));
    s.value = value;
    s.addEventListener("change", () => onchange(s.value));
    return s;
  }

  function labeled(label, control) { return el("label", { class: "field" }, el("span", { text: label }), control); }

  function table(headers, rows, attrs) {
    const tb = el("tbody");
    append(tb, rows);
    return el("div", { class: "table-wrap" }, el("table", attrs || { class: "grid-table" },
      el("thead", null, el("tr", null, headers.map((h) => (h instanceof Node ? h : el("th", { text: h }))))), tb));
  }

  // ------------------------------------------------------------------ router

  let timer = null;
  const state = { hostFilter: "" };
  let renderSeq = 0;

  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    const [path, query] = h.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { page: parts[0] || "overview", arg: parts.slice(1).join("/"), q: new URLSearchParams(query || "") };
  }

  function go(page, arg, params) {
    const q = params ? qs(params) : "";
    location.hash = "#/" + page + (arg ? "/" + encodeURIComponent(arg) : "") + (q ? "?" + q : "");
  }

  function setRefresh(fn, ms) {
    if (timer) clearInterval(timer);
    timer = fn ? setInterval(fn, ms) : null;
  }

  async function render() {
    const seq = ++renderSeq;
    const r = route();
    setRefresh(null);
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === r.page);
    const page = PAGES[r.page] || PAGES.overview;
    const m = main();
    if (!m.firstChild || m.dataset.page !== r.page) {
      clear(m);
      m.appendChild(el("div", { class: "loading", text: t("common.loading") }));
    }
    m.dataset.page = r.page;
    try {
      const node = await page(r);
      if (seq !== renderSeq) return;
      clear(m);
      m.appendChild(node);
      document.body.dataset.ready = r.page;
    } catch (err) {
      if (seq !== renderSeq) return;
      clear(m);
      m.appendChild(errorBox(err));
      document.body.dataset.ready = r.page;
    }
  }

  function rerenderInPlace(r, pageFn) {
    const seq = renderSeq;
    return async () => {
      const f = document.activeElement;
      if (f && main().contains(f) && (f.tagName === "INPUT" || f.tagName === "SELECT")) return; // the user is typing
      if (document.hidden) return;
      try {
        const node = await pageFn(r);
        if (seq !== renderSeq) return;
        clear(main());
        main().appendChild(node);
      } catch (e) { /* keep what is shown; the next tick retries */ }
    };
  }

  // ------------------------------------------------------------------ overview

  async function latestByHost(metric, tags, agg) {
    const p = { metric, start: "-1h", step: "60", agg: agg || "avg" };
    for (const [k, v] of Object.entries(tags || {})) p["tag." + k] = v;
    const res = await api("/api/v1/query?" + qs(p));
    const out = {};
    for (const s of res.series || []) {
      const pts = s.points || [];
      if (!pts.length) continue;
      const last = pts[pts.length - 1];
      const cur = out[s.host];
      if (!cur || last[1] > cur.value) out[s.host] = { value: last[1], ts: last[0], points: pts };
    }
    return out;
  }

  async function pageOverview(r) {
    const [hostsRes, cpu, mem, disk, load, alerts] = await Promise.all([
      api("/api/v1/hosts"),
      latestByHost("system.cpu.usage_percent", { cpu: "total" }),
      latestByHost("system.memory.used_percent"),
      latestByHost("system.filesystem.used_percent", null, "max"),
      latestByHost("system.load.1m"),
      api("/api/v1/alerts?state=firing").catch(() => null),
    ]);
    // problems first: down, then stale, then up; by name within each
    const rank = { down: 0, stale: 1, up: 2 };
    const hosts = (hostsRes.hosts || []).slice().sort((a, b) => (rank[a.status] ?? 0) - (rank[b.status] ?? 0) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
    const firingByHost = {};
    if (alerts) for (const a of alerts.alerts || []) { const h = (a.labels || {}).host; if (h) firingByHost[h] = (firingByHost[h] || 0) + 1; }
    const count = (st) => hosts.filter((h) => h.status === st).length;
    const stats = el("div", { class: "stats" },
      stat(t("ov.hosts"), hosts.length, ""),
      stat(t("ov.up"), count("up"), "ok"),
      stat(t("ov.stale"), count("stale"), count("stale") ? "warn" : ""),
      stat(t("ov.down"), count("down"), count("down") ? "crit" : ""),
      alerts ? stat(t("ov.firing"), (alerts.alerts || []).length, (alerts.alerts || []).length ? "crit" : "", "#/alerts") : null);
    const filter = el("input", { type: "search", class: "filter", id: "host-filter", placeholder: t("common.filter_host"), value: state.hostFilter });
    const rows = hosts.map((h) => {
      const name = h.host;
      const c = cpu[name], mm = mem[name], d = disk[name], l = load[name];
      const st = h.status || "down";
      return el("tr", { class: "host-row row-" + st, dataset: { host: name } },
        el("td", null, el("a", { href: "#/host/" + encodeURIComponent(name), class: "host-link", text: name }),
          firingByHost[name] ? el("a", { href: "#/alerts", class: "badge crit small", text: "🔔 " + firingByHost[name] }) : null),
        el("td", null, badge(t("status." + st), "st-" + st)),
        el("td", { class: "nowrap", title: fmtTime(h.last_seen), text: fmtAgo(h.last_seen) }),
        el("td", { class: "cpu-val" }, meter(c ? c.value : null)),
        el("td", { class: "mem-val" }, meter(mm ? mm.value : null)),
        el("td", { class: "disk-val" }, meter(d ? d.value : null)),
        el("td", { class: "num load-val", text: l ? fmtNum(l.value, 2) : "–" }),
        el("td", null, c ? sparkline(c.points, { max: 100 }) : null),
        el("td", { class: "muted", text: h.agent_version || "" }));
    });
    const tbl = hosts.length
      ? table([t("col.host"), t("col.status"), t("col.last_seen"), t("col.cpu"), t("col.mem"), t("col.disk"), t("col.load"), t("col.trend"), t("col.version")], rows,
        { class: "grid-table", id: "hosts-table" })
      : el("div", { class: "empty big", text: t("ov.no_hosts") });
    const applyFilter = () => {
      const f = filter.value.trim().toLowerCase();
      for (const tr of tbl.querySelectorAll ? tbl.querySelectorAll("tr.host-row") : []) tr.hidden = !!f && !tr.dataset.host.toLowerCase().includes(f);
    };
    filter.addEventListener("input", () => { state.hostFilter = filter.value; applyFilter(); });
    applyFilter();
    setRefresh(rerenderInPlace(r, pageOverview), 15000);
    return el("div", null,
      el("div", { class: "page-head" }, el("h2", { text: t("ov.title") }), el("span", { class: "muted small", text: t("common.updated") + " " + fmtTime(Date.now() / 1000, false) })),
      stats, card(null, toolbar(filter), tbl));
  }

  function stat(label, value, cls, href) {
    const body = [el("div", { class: "stat-val", text: String(value) }), el("div", { class: "stat-label", text: label })];
    return href ? el("a", { class: "stat " + cls, href }, body) : el("div", { class: "stat " + cls }, body);
  }

  // ------------------------------------------------------------------ host detail

  const RANGES = [["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];

  async function q(metric, tags, host, start, end, step, agg) {
    const p = { metric, host, start: String(start), end: String(end), step: String(step), agg: agg || "avg" };
    for (const [k, v] of Object.entries(tags || {})) p["tag." + k] = v;
    return (await api("/api/v1/query?" + qs(p))).series || [];
  }

  async function pageHost(r) {
    const hosts = (await api("/api/v1/hosts")).hosts || [];
    if (!hosts.length) return el("div", { class: "empty big", text: t("ov.no_hosts") });
    const name = r.arg || hosts[0].host;
    const info = hosts.find((h) => h.host === name) || { host: name, status: "down" };
    const rangeKey = RANGES.find((x) => x[0] === r.q.get("range")) ? r.q.get("range") : "1h";
    const range = RANGES.find((x) => x[0] === rangeKey)[1];
    const end = Math.floor(Date.now() / 1000), start = end - range;
    const step = Math.max(10, Math.round(range / 240));
    const Q = (m, tags, agg) => q(m, tags, name, start, end, step, agg);
    const [usage, user, sys, iow, steal, mem, load1, load5, load15, fs, dr, dw, rx, tx, ncpu, memTotal, uptime, events] = await Promise.all([
      Q("system.cpu.usage_percent", { cpu: "total" }), Q("system.cpu.user_percent", { cpu: "total" }), Q("system.cpu.system_percent", { cpu: "total" }),
      Q("system.cpu.iowait_percent", { cpu: "total" }), Q("system.cpu.steal_percent", { cpu: "total" }), Q("system.memory.used_percent"),
      Q("system.load.1m"), Q("system.load.5m"), Q("system.load.15m"), Q("system.filesystem.used_percent", null, "max"),
      Q("system.disk.read_bytes_per_second"), Q("system.disk.write_bytes_per_second"),
      Q("system.network.rx_bytes_per_second"), Q("system.network.tx_bytes_per_second"),
      Q("system.cpu.count", null, "last"), Q("system.memory.total_bytes", null, "last"), Q("system.uptime_seconds", null, "last"),
      api("/api/v1/events?" + qs({ host: name, start: String(end - 86400), limit: "20" })).catch(() => ({ events: [] })),
    ]);
    const one = (list, label) => (list[0] ? [{ name: label, points: list[0].points }] : []);
    const lastOf = (list) => (list[0] && list[0].points.length ? list[0].points[list[0].points.length - 1][1] : null);
    const per = (list, key, suffix) => list.map((s) => ({ name: (s.tags[key] || "?") + (suffix ? " " + suffix : ""), points: s.points }));
    const notLo = (list) => list.filter((s) => s.tags.interface !== "lo");
    const opts = { start, end };
    const picker = select(hosts.map((h) => [h.host, h.host]), name, (v) => go("host", v, { range: rangeKey }), { id: "host-pick" });
    const ranges = el("div", { class: "seg" }, RANGES.map(([k]) =>
      el("button", { type: "button", class: k === rangeKey ? "on" : "", text: k, onclick: () => go("host", name, { range: k }) })));
    const chips = el("div", { class: "chips" },
      badge(t("status." + (info.status || "down")), "st-" + (info.status || "down")),
      el("span", { class: "chip" }, t("col.last_seen") + ": ", el("b", { text: fmtAgo(info.last_seen) })),
      lastOf(ncpu) !== null ? el("span", { class: "chip" }, t("host.cpus") + ": ", el("b", { text: fmtNum(lastOf(ncpu), 0) })) : null,
      lastOf(memTotal) !== null ? el("span", { class: "chip" }, t("host.mem_total") + ": ", el("b", { text: fmtBytes(lastOf(memTotal)) })) : null,
      lastOf(uptime) !== null ? el("span", { class: "chip" }, t("host.uptime") + ": ", el("b", { text: fmtDuration(lastOf(uptime)) })) : null,
      info.agent_version ? el("span", { class: "chip" }, "agent ", el("b", { text: info.agent_version })) : null);
    const evRows = (events.events || []).map((e) => el("tr", null,
      el("td", { class: "nowrap", text: fmtTime(e.ts) }), el("td", null, badge(e.kind, "kind")), el("td", { class: "msg", text: e.message || "" })));
    setRefresh(range <= 21600 ? rerenderInPlace(r, pageHost) : null, 30000);
    return el("div", null,
      el("div", { class: "page-head" }, el("h2", null, t("nav.host") + " · ", el("span", { id: "host-name", text: name })), chips),
      toolbar(labeled(t("host.pick"), picker), labeled(t("host.range"), ranges)),
      el("div", { class: "charts" },
        card(t("host.cpu"), lineChart([...one(usage, t("host.usage")), ...one(user, t("host.user")), ...one(sys, t("host.system")),
          ...one(iow, t("host.iowait")), ...one(steal, t("host.steal"))], { ...opts, unit: "pct", max: 100 })),
        card(t("host.mem"), lineChart(one(mem, t("host.usage")), { ...opts, unit: "pct", max: 100 })),
        card(t("host.fs"), lineChart(per(fs, "mountpoint"), { ...opts, unit: "pct", max: 100 })),
        card(t("host.load"), lineChart([...one(load1, "1m"), ...one(load5, "5m"), ...one(load15, "15m")], { ...opts, unit: "num" })),
        card(t("host.diskio"), lineChart([...per(dr, "device", t("host.read")), ...per(dw, "device", t("host.write"))], { ...opts, unit: "Bps" })),
        card(t("host.net"), lineChart([...per(notLo(rx), "interface", t("host.rx")), ...per(notLo(tx), "interface", t("host.tx"))], { ...opts, unit: "Bps" }))),
      card(t("host.events"), evRows.length ? table([t("pf.time"), t("host.kind"), t("ex.message")], evRows) : el("div", { class: "empty", text: t("common.none") })));
  }

  // ------------------------------------------------------------------ alerts

  function userName() { try { return localStorage.getItem("iw.user") || ""; } catch (e) { return ""; } }

  async function pageAlerts(r) {
    let alerts;
    try { alerts = await api("/api/v1/alerts"); } catch (e) { if (e.status === 404) return el("div", null, el("h2", { text: t("al.title") }), errorBox(e, "alerting")); throw e; }
    const [sil, notes] = await Promise.all([
      api("/api/v1/silences").catch(() => ({ silences: [] })),
      api("/api/v1/notifications?limit=30").catch(() => ({ notifications: [] })),
    ]);
    const state = r.q.get("state") || "";
    const all = alerts.alerts || [];
    const shown = state ? all.filter((a) => a.state === state) : all;
    const cnt = (s) => all.filter((a) => a.state === s).length;
    const tabs = el("div", { class: "seg" }, [["", t("common.all") + " " + all.length], ["firing", t("al.firing") + " " + cnt("firing")],
      ["pending", t("al.pending") + " " + cnt("pending")], ["resolved", t("al.resolved") + " " + cnt("resolved")]].map(([k, label]) =>
      el("button", { type: "button", class: k === state ? "on" : "", text: label, onclick: () => go("alerts", "", { state: k }) })));
    const who = el("input", { type: "text", id: "ack-user", placeholder: t("al.ack_prompt"), value: userName() });
    who.addEventListener("change", () => { try { localStorage.setItem("iw.user", who.value.trim()); } catch (e) { /* */ } });
    const msg = el("div", { class: "form-msg" });
    const silenceForm = buildSilenceForm(msg);
    const rows = shown.map((a) => {
      const labels = Object.entries(a.labels || {}).filter(([k]) => k !== "alertname");
      const summary = alertSummary(a);
      let ackCell;
      if (a.ack) ackCell = el("span", { class: "acked", title: a.ack.comment || "", text: "✓ " + t("al.acked") + " · " + a.ack.by });
      else if (a.state === "firing") ackCell = el("button", { type: "button", class: "small", text: t("al.ack"), onclick: async (ev) => {
        const by = who.value.trim();
        if (!by) { who.focus(); msg.textContent = t("al.ack_prompt"); return; }
        try { localStorage.setItem("iw.user", by); } catch (e) { /* */ }
        ev.target.disabled = true;
        try { await api("/api/v1/alerts/" + encodeURIComponent(a.id) + "/ack", { method: "POST", body: { by } }); render(); }
        catch (e) { msg.textContent = t("common.error") + ": " + e.message; ev.target.disabled = false; }
      } });
      return el("tr", { class: "alert-row st-" + a.state, dataset: { id: a.id } },
        el("td", null, badge(t("sev." + a.severity) === "sev." + a.severity ? a.severity : t("sev." + a.severity), "sev-" + a.severity)),
        el("td", null, badge(t("al." + a.state), "state-" + a.state),
          a.silenced_by ? badge(t("al.silenced"), "muted-b") : null, a.inhibited_by ? badge(t("al.inhibited"), "muted-b") : null),
        el("td", null, el("b", { text: a.rule }), el("div", { class: "msg small", text: summary })),
        el("td", null, labels.map(([k, v]) => el("span", { class: "label", text: k + "=" + v }))),
        el("td", { class: "num", text: a.value === null || a.value === undefined ? "–" : fmtNum(a.value) }),
        el("td", { class: "nowrap", title: fmtTime(a.firing_since || a.active_since), text: a.state === "resolved" ? fmtTime(a.resolved_at) : fmtAgo(a.firing_since || a.active_since) }),
        el("td", { class: "nowrap" }, ackCell || "", " ",
          a.state !== "resolved" ? el("button", { type: "button", class: "small ghost", text: t("al.silence_this"), onclick: () => {
            silenceForm.matchers.value = Object.entries(a.labels || {}).filter(([k]) => ["host", "rule", "alertname", "module"].includes(k))
              .map(([k, v]) => k + "=\"" + v + "\"").join(", ") || "rule=\"" + a.rule + "\"";
            silenceForm.node.scrollIntoView({ behavior: "smooth" });
          } }) : null));
    });
    const silRows = (sil.silences || []).map((s) => el("tr", { class: "sil-" + s.status },
      el("td", null, badge(t("sil." + s.status), "sil-" + s.status)),
      el("td", null, (s.matchers || []).map((m) => el("span", { class: "label", text: m }))),
      el("td", { class: "nowrap", text: fmtTime(s.ends_at) }),
      el("td", { text: s.created_by || "" }),
      el("td", { class: "msg", text: s.comment || "" }),
      el("td", null, s.status !== "expired" ? el("button", { type: "button", class: "small ghost", text: t("al.expire"), onclick: async () => {
        try { await api("/api/v1/silences/" + encodeURIComponent(s.id), { method: "DELETE" }); render(); }
        catch (e) { msg.textContent = t("common.error") + ": " + e.message; }
      } }) : null)));
    const noteRows = (notes.notifications || []).map((n) => {
      const oc = String(n.outcome || "");
      const what = (Array.isArray(n.alerts) ? n.alerts : []).map((x) => (x && typeof x === "object" ? (x.rule || x.id || "") + ((x.labels || {}).host ? "@" + x.labels.host : "") : String(x)));
      return el("tr", null,
        el("td", { class: "nowrap", text: fmtTime(n.ts) }),
        el("td", null, String(n.receiver || ""), n.integration ? el("span", { class: "muted small", text: " · " + n.integration }) : null),
        el("td", null, badge(String(n.status || ""), n.status === "resolved" ? "state-resolved" : "state-firing")),
        el("td", null, badge(oc, oc === "sent" ? "ok" : oc === "pending" ? "" : "crit"), n.attempts > 1 ? el("span", { class: "muted small", text: " ×" + n.attempts }) : null),
        el("td", { class: "msg small", text: what.join(", ") }),
        el("td", { class: "msg small", text: n.error || "" }));
    });
    setRefresh(rerenderInPlace(r, pageAlerts), 20000);
    return el("div", null,
      el("div", { class: "page-head" }, el("h2", { text: t("al.title") })),
      toolbar(tabs, labeled(t("al.ack_by"), who)), msg,
      card(null, rows.length ? table([t("al.severity"), t("al.state"), t("al.rule") + " / " + t("al.summary"), t("al.labels"), t("al.value"), t("al.since"), ""], rows, { class: "grid-table", id: "alerts-table" })
        : el("div", { class: "empty big", text: t("al.none") })),
      card(t("al.silences"), silenceForm.node, silRows.length ? table([t("al.state"), t("al.matchers"), t("al.ends"), t("al.created_by"), t("al.comment"), ""], silRows)
        : el("div", { class: "empty", text: t("al.no_silences") })),
      card(t("al.notifications"), noteRows.length ? table([t("pf.time"), t("al.receiver"), t("al.state"), t("al.outcome"), t("al.rule"), t("al.error")], noteRows, { class: "grid-table", id: "notes-table" })
        : el("div", { class: "empty", text: t("al.no_notifications") })));
  }

  function alertSummary(a) {
    const an = a.annotations || {};
    if (typeof an.summary === "string" && an.summary) return an.summary;
    if (typeof an.description === "string" && an.description) return an.description;
    const d = a.details && typeof a.details === "object" ? a.details : {};
    if (!d.metric) return typeof a.details === "string" ? a.details : "";
    const win = typeof d.window === "number" ? " " + fmtDuration(d.window) : "";
    const th = a.threshold === null || a.threshold === undefined ? "" : " " + (d.op || ">") + " " + fmtNum(a.threshold);
    return d.metric + (d.agg ? " · " + d.agg + win : "") + th;
  }

  function buildSilenceForm(msg) {
    const matchers = el("input", { type: "text", class: "wide", placeholder: t("al.matchers_help") });
    const dur = select([["1h", "1h"], ["2h", "2h"], ["4h", "4h"], ["8h", "8h"], ["24h", "24h"], ["72h", "72h"], ["7d", "7d"]], "2h", () => {});
    const comment = el("input", { type: "text", placeholder: t("al.comment") });
    const create = el("button", { type: "button", text: t("al.create"), onclick: async () => {
      const list = splitMatchers(matchers.value);
      if (!list.length) { matchers.focus(); return; }
      try {
        await api("/api/v1/silences", { method: "POST", body: { matchers: list, duration: dur.value, comment: comment.value, created_by: userName() } });
        render();
      } catch (e) { msg.textContent = t("common.error") + ": " + e.message; }
    } });
    const node = el("div", { class: "silence-form" }, el("b", { text: t("al.new_silence") }), labeled(t("al.matchers"), matchers), labeled(t("al.duration"), dur), labeled(t("al.comment"), comment), create);
    return { node, matchers };
  }

  function splitMatchers(s) {
    const out = [];
    let cur = "", quote = false;
    for (const ch of s) {
      if (ch === "\"") quote = !quote;
      if (ch === "," && !quote) { if (cur.trim()) out.push(cur.trim()); cur = ""; } else cur += ch;
    }
    if (cur.trim()) out.push(cur.trim());
    return out;
  }

  // ------------------------------------------------------------------ exceptions

  const WINDOWS = ["15m", "1h", "6h", "24h", "7d", "30d"];
  const parseWin = (w) => ({ m: 60, h: 3600, d: 86400 }[w.slice(-1)] * parseInt(w, 10));

  async function pageExceptions(r) {
    if (r.arg) return pageException(r);
    const win = WINDOWS.includes(r.q.get("window")) ? r.q.get("window") : "24h";
    const sort = r.q.get("sort") || "count";
    const module = r.q.get("module") || "";
    let res;
    try { res = await api("/api/v1/exceptions?" + qs({ window: win, sort, module, limit: "200" })); }
    catch (e) { if (e.status === 404) return el("div", null, el("h2", { text: t("ex.title") }), errorBox(e, "exceptions")); throw e; }
    let modules = [];
    try {
      const allm = module ? await api("/api/v1/exceptions?" + qs({ window: win, limit: "1000" })) : res;
      modules = [...new Set((allm.groups || []).map((g) => g.module))].sort();
    } catch (e) { /* the filter just lists fewer modules */ }
    if (module && !modules.includes(module)) modules.push(module);
    const params = { window: win, sort, module };
    const nav = (k, v) => go("exceptions", "", { ...params, [k]: v });
    const groups = res.groups || [];
    const rows = groups.map((g) => el("tr", { class: "ex-row clickable", dataset: { id: g.id }, onclick: () => go("exceptions", String(g.id), { window: win }) },
      el("td", null, el("a", { href: "#/exceptions/" + g.id + "?" + qs({ window: win }), class: "ex-type", text: g.type })),
      el("td", { class: "msg ex-msg", title: g.message, text: g.message.length > 200 ? g.message.slice(0, 200) + "…" : g.message }),
      el("td", null, badge(g.module, "module")),
      el("td", { class: "muted", text: g.service || "" }),
      el("td", { class: "num strong", text: String(g.window_count) }),
      el("td", { class: "num muted", text: String(g.count) }),
      el("td", { class: "num", title: (g.hosts || []).join(", "), text: String(g.window_hosts || (g.hosts || []).length) }),
      el("td", { class: "nowrap", title: fmtTime(g.last_seen), text: fmtAgo(g.last_seen) })));
    return el("div", null,
      el("div", { class: "page-head" }, el("h2", { text: t("ex.title") })),
      toolbar(
        labeled(t("common.window"), select(WINDOWS.map((w) => [w, w]), win, (v) => nav("window", v), { id: "ex-window" })),
        labeled(t("common.module"), select([["", t("common.all")], ...modules.map((m) => [m, m])], module, (v) => nav("module", v), { id: "ex-module" })),
        labeled(t("common.sort"), select([["count", t("ex.sort_count")], ["last_seen", t("ex.sort_last")], ["total", t("ex.sort_total")], ["first_seen", t("ex.sort_first")]], sort, (v) => nav("sort", v), { id: "ex-sort" }))),
      card(null, rows.length ? table([t("ex.type"), t("ex.message"), t("common.module"), t("ex.service"), t("ex.window_count"), t("ex.total"), t("ex.hosts"), t("ex.last_seen")], rows, { class: "grid-table", id: "ex-table" })
        : el("div", { class: "empty big", text: t("ex.none") })));
  }

  async function pageException(r) {
    const win = WINDOWS.includes(r.q.get("window")) ? r.q.get("window") : "24h";
    const g = await api("/api/v1/exceptions/" + encodeURIComponent(r.arg) + "?" + qs({ window: win }));
    const hist = g.histogram || { step: 60, points: [] };
    const meta = el("dl", { class: "meta" },
      [[t("common.module"), g.module], [t("ex.service"), g.service], [t("ex.endpoint"), g.endpoint], [t("ex.language"), g.language],
        [t("ex.first_seen"), fmtTime(g.first_seen)], [t("ex.last_seen"), fmtTime(g.last_seen) + " (" + fmtAgo(g.last_seen) + ")"],
        [t("ex.total"), String(g.count)], [t("ex.window_count") + " (" + win + ")", String(g.window_count)]]
        .filter(([, v]) => v !== "" && v !== null && v !== undefined).map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const frames = (g.sample_frames || []).map((f) => el("tr", null,
      el("td", { class: "mono", text: String(f.file || f.filename || f.module || "") }), el("td", { class: "num mono", text: String(f.line || f.lineno || "") }),
      el("td", { class: "mono", text: String(f.function || f.func || f.name || "") })));
    const hostRows = (g.hosts || []).map((h) => el("tr", null, el("td", null, el("a", { href: "#/host/" + encodeURIComponent(h.host), text: h.host })),
      el("td", { class: "num", text: String(h.count) }), el("td", { class: "nowrap", text: fmtAgo(h.last_seen) })));
    const occRows = (g.occurrences || []).map((o) => el("tr", null, el("td", { class: "nowrap", text: fmtTime(o.ts) }), el("td", { text: o.host }),
      el("td", { text: o.endpoint || o.service || "" }), el("td", { class: "num", text: String(o.count) }), el("td", { class: "msg small", text: o.message || "" })));
    return el("div", null,
      el("div", { class: "page-head" }, el("a", { href: "#/exceptions?" + qs({ window: win }), class: "back", text: "← " + t("common.back") }),
        el("h2", { class: "ex-title" }, el("span", { class: "ex-type", text: g.type }))),
      el("pre", { class: "ex-message", id: "ex-message", text: g.message }),
      el("div", { class: "two" },
        card(null, meta),
        card(t("ex.trend") + " (" + win + ")", barChart(hist.points || [], { start: g.start, end: g.end, step: hist.step }))),
      g.sample_stack ? card(t("ex.stack"), el("pre", { class: "stack", id: "ex-stack", text: g.sample_stack }))
        : frames.length ? card(t("ex.frames"), table(["file", "line", "function"], frames)) : null,
      el("div", { class: "two" },
        card(t("ex.hosts"), hostRows.length ? table([t("col.host"), t("common.count"), t("ex.last_seen")], hostRows) : el("div", { class: "empty", text: t("common.none") })),
        card(t("ex.occurrences"), occRows.length ? table([t("pf.time"), t("col.host"), t("ex.endpoint"), t("common.count"), t("ex.message")], occRows) : el("div", { class: "empty", text: t("common.none") }))));
  }

  // ------------------------------------------------------------------ performance

  async function pagePerformance(r) {
    const tab = r.q.get("tab") === "sql" ? "sql" : "endpoints";
    const win = WINDOWS.includes(r.q.get("window")) ? r.q.get("window") : "1h";
    const sort = r.q.get("sort") || "p95";
    const module = r.q.get("module") || "";
    const params = { tab, window: win, sort, module };
    const nav = (k, v) => go("performance", "", { ...params, [k]: v });
    const head = el("div", { class: "page-head" }, el("h2", { text: t("pf.title") }));
    let res;
    try { res = await api("/api/v1/performance/" + tab + "?" + qs({ window: win, sort, module, limit: "100" })); }
    catch (e) { if (e.status === 404) return el("div", null, head, errorBox(e, "performance")); throw e; }
    const items = res.items || [];
    const tabs = el("div", { class: "seg" }, [["endpoints", t("pf.endpoints")], ["sql", t("pf.sql")]].map(([k, label]) =>
      el("button", { type: "button", class: k === tab ? "on" : "", text: label, onclick: () => nav("tab", k) })));
    const modInput = el("input", { type: "search", placeholder: t("common.module"), value: module, id: "pf-module" });
    modInput.addEventListener("change", () => nav("module", modInput.value.trim()));
    const tb = [];
    items.forEach((it, i) => {
      const name = tab === "sql" ? (it.statement || it.fingerprint) : it.endpoint;
      const detail = el("tr", { class: "detail", hidden: true }, el("td", { colspan: 9 }, slowest(it, tab)));
      const errCls = it.error_rate >= 0.05 ? "crit" : it.error_rate > 0 ? "warn" : "";
      tb.push(el("tr", { class: "pf-row clickable", onclick: () => { detail.hidden = !detail.hidden; } },
        el("td", { class: "mono pf-name", title: name, text: name.length > 140 ? name.slice(0, 140) + "…" : name }),
        el("td", null, badge(it.module, "module"), it.service ? el("span", { class: "muted small", text: " " + it.service }) : null, tab === "sql" && it.db ? el("span", { class: "muted small", text: " · " + it.db }) : null),
        el("td", { class: "num", text: String(it.count) }),
        el("td", { class: "num " + errCls, text: fmtNum(it.error_rate * 100, 2) + "%" }),
        el("td", { class: "num", text: fmtSecs(it.p50_seconds) }),
        el("td", { class: "num strong", text: fmtSecs(it.p95_seconds) }),
        el("td", { class: "num", text: fmtSecs(it.p99_seconds) }),
        el("td", { class: "num", text: fmtSecs(it.max_seconds) }),
        el("td", { class: "num muted", text: fmtSecs(it.total_seconds) })));
      tb.push(detail);
      if (i === 0 && r.q.get("open") === "1") detail.hidden = false;
    });
    const sortOpts = [["p95", "p95"], ["p99", "p99"], ["p50", "p50"], ["count", t("pf.count")], ["error_rate", t("pf.error_rate")],
      ["total", t("pf.total")], ["max", t("pf.max")]];
    return el("div", null, head,
      toolbar(tabs, labeled(t("common.window"), select(WINDOWS.map((w) => [w, w]), win, (v) => nav("window", v))),
        labeled(t("common.sort"), select(sortOpts, sort, (v) => nav("sort", v))), labeled(t("common.module"), modInput)),
      card(null, items.length ? table([tab === "sql" ? t("pf.statement") : t("pf.endpoint"), t("common.module"), t("pf.count"), t("pf.error_rate"), "p50", "p95", "p99", t("pf.max"), t("pf.total")], tb, { class: "grid-table", id: "pf-table" })
        : el("div", { class: "empty big", text: t("pf.none") })));
  }

  function slowest(it, tab) {
    const rows = (it.slowest || []).map((s) => el("tr", null, el("td", { class: "num", text: fmtSecs(s.duration) }), el("td", { class: "nowrap", text: fmtTime(s.ts) }),
      el("td", { text: s.host || "–" }), el("td", { class: "mono msg", text: s.statement || s.endpoint || "" })));
    return el("div", { class: "slowest" },
      tab === "sql" && it.statement ? el("pre", { class: "stack", text: it.statement }) : null,
      el("div", { class: "small muted" }, t("pf.avg") + " " + fmtSecs(it.avg_seconds) + " · min " + fmtSecs(it.min_seconds) + " · " + t("pf.max") + " " + fmtSecs(it.max_seconds)),
      el("h4", { text: t("pf.slowest") }),
      rows.length ? table([t("pf.duration"), t("pf.time"), t("col.host"), tab === "sql" ? t("pf.statement") : ""], rows) : el("div", { class: "empty", text: t("common.none") }));
  }

  // ------------------------------------------------------------------ boot

  const PAGES = { overview: pageOverview, host: pageHost, alerts: pageAlerts, exceptions: pageExceptions, performance: pagePerformance };

  function applyStaticText() {
    for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
    document.getElementById("btn-lang").textContent = t("lang.switch");
    updateTokenButton();
  }

  function boot() {
    applyStaticText();
    document.getElementById("btn-lang").addEventListener("click", () => {
      window.I18N.set(window.I18N.lang === "en" ? "zh" : "en");
      const u = new URL(location.href);
      if (u.searchParams.has("lang")) { u.searchParams.delete("lang"); history.replaceState(null, "", u.pathname + u.search + u.hash); }
      applyStaticText();
      refreshHealth();
      render();
    });
    document.getElementById("btn-token").addEventListener("click", openToken);
    document.getElementById("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); closeToken(); saveToken($("#token-input").value.trim()); });
    document.getElementById("token-cancel").addEventListener("click", closeToken);
    document.getElementById("token-clear").addEventListener("click", () => { closeToken(); saveToken(""); });
    window.addEventListener("hashchange", render);
    refreshHealth();
    setInterval(refreshHealth, 30000);
    render();
  }

  window.IW = { render, api, fmtBytes, fmtSecs };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
