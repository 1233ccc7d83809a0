// embedscope web page: plain JS, no build step, no network beyond this server.
// State lives in the URL (?c=&q=&v=&like=&f.<field>=) so back/forward and shared links work.
"use strict";

const $ = (sel) => document.querySelector(sel);
const COMPARE = "__compare__";
let info = null; // /api/collections/{c}
let seq = 0; // request counter: only the latest response is drawn

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of [].concat(v)) url.searchParams.append(k, one);
  }
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function state() {
  return new URLSearchParams(location.search);
}

function setState(params, push = true) {
  const url = `${location.pathname}?${params.toString()}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function status(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

// --- collection, modes, filters, suggestions -------------------------------------------------------
async function loadCollections() {
  const list = await api("/api/collections");
  if (!list.length) {
    status("No collections are served. Create one with `embedscope demo` and restart the server.", true);
    return null;
  }
  const select = $("#collection");
  select.replaceChildren(...list.map((c) => el("option", { value: c.name }, `${c.name} (${c.items})`)));
  $("#collection-wrap").hidden = list.length < 2;
  const wanted = state().get("c");
  const name = list.some((c) => c.name === wanted) ? wanted : list[0].name;
  select.value = name;
  return name;
}

async function loadInfo(name) {
  info = await api(`/api/collections/${encodeURIComponent(name)}`);
  const versions = info.versions;
  const opts = versions.map((v) => ({
    value: v.name,
    label: v.name,
    hint: v.encoder.name !== v.name ? v.encoder.name : (v.active ? "default" : ""),
  }));
  // search recipes (e.g. hybrid = bm25 + minilm fused) are searched by name, like versions
  for (const r of info.recipes || []) {
    opts.push({ value: r.name, label: r.name, hint: `${r.parts.join(" + ")}, ${r.fusion}` });
  }
  if (opts.length > 1) opts.push({ value: COMPARE, label: "side by side", hint: "" });
  const current = state().get("v") || info.default_search || info.active_version || (opts[0] && opts[0].value);
  $("#mode-options").replaceChildren(
    ...opts.map((o) =>
      el("label", {},
        el("input", { type: "radio", name: "version", value: o.value, checked: o.value === current }),
        o.label, o.hint ? el("small", {}, ` ${o.hint}`) : null)
    )
  );
  $("#modes").hidden = opts.length < 2;
  $("#suggestions").replaceChildren(
    el("span", { class: "sr-label" }, "Try:"),
    ...info.display.suggestions.map((s) =>
      el("button", { type: "button", onclick: () => { $("#q").value = s; submit(); } }, s)
    )
  );
  buildFilters();
}

function buildFilters() {
  const params = state();
  const box = $("#filters");
  const parts = info.display.filters.map((f) => {
    const id = `f-${f.field}`;
    if (f.kind === "range") {
      const step = Number.isInteger(f.min) && Number.isInteger(f.max) ? "1" : "any";
      return el("fieldset", {},
        el("legend", {}, `${f.field.replaceAll("_", " ")} between`),
        el("div", { class: "range" },
          el("input", { type: "number", id: `${id}-min`, "data-field": f.field, "data-op": ">=", step,
            placeholder: f.min ?? "", "aria-label": `${f.field} from`, value: params.get(`f.${f.field}.min`) }),
          "–",
          el("input", { type: "number", id: `${id}-max`, "data-field": f.field, "data-op": "<=", step,
            placeholder: f.max ?? "", "aria-label": `${f.field} to`, value: params.get(`f.${f.field}.max`) })));
    }
    return el("label", { for: id },
      el("span", {}, `${f.field.replaceAll("_", " ")} contains`),
      el("input", { type: "text", id, "data-field": f.field, "data-op": "contains",
        value: params.get(`f.${f.field}.has`) }));
  });
  box.replaceChildren(...parts);
  $("#filters-box").hidden = parts.length === 0;
  countFilters();
}

function filterInputs() {
  return [...document.querySelectorAll("#filters input")].filter((i) => i.value.trim() !== "");
}

function countFilters() {
  const n = filterInputs().length;
  $("#filter-count").textContent = n ? `(${n} active)` : "";
  if (n) $("#filters-box").open = true;
}

// the filter language of embedscope.filters; JSON string literals are valid Python literals
function whereClause() {
  return filterInputs().map((i) => {
    const f = i.dataset.field;
    if (i.dataset.op === "contains") return `${f} contains ${JSON.stringify(i.value.trim())}`;
    return `${f} ${i.dataset.op} ${Number(i.value)}`;
  }).join(" and ");
}

function mode() {
  const checked = document.querySelector("input[name=version]:checked");
  return checked ? checked.value : null;
}

// --- running -----------------------------------------------------------------------------------------
function submit(push = true) {
  const q = $("#q").value.trim();
  if (!q) { status("Type what you are looking for first.", true); $("#q").focus(); return; }
  const p = new URLSearchParams();
  p.set("c", $("#collection").value);
  p.set("q", q);
  if (mode()) p.set("v", mode());
  for (const i of filterInputs()) {
    const suffix = i.dataset.op === "contains" ? "has" : i.dataset.op === ">=" ? "min" : "max";
    p.set(`f.${i.dataset.field}.${suffix}`, i.value.trim());
  }
  setState(p, push);
  run();
}

function moreLike(id, title) {
  const p = state();
  p.delete("q");
  p.set("like", id);
  if (title) p.set("t", title);
  setState(p);
  run();
  // keyboard and screen-reader users land on the "More like ..." heading, not at the old scroll spot
  $("#context").hidden = false;
  $("#context").focus();
  $("#context").scrollIntoView({ block: "start" });
}

async function run() {
  const p = state();
  const my = ++seq;
  countFilters();
  const where = whereClause() || undefined;
  const v = mode();
  const like = p.get("like");
  const q = p.get("q");
  const c = encodeURIComponent($("#collection").value);
  $("#context").hidden = !like;
  if (!like && !q) { $("#results").replaceChildren(); status(""); return; }
  $("#go").disabled = true;
  status("Searching…");
  const t0 = performance.now();
  try {
    if (like) {
      const version = v === COMPARE ? undefined : v;
      $("#context").replaceChildren(
        "More like ", el("strong", {}, p.get("t") || like), " · ",
        el("a", { href: "#", onclick: (e) => { e.preventDefault(); history.back(); } }, "back"));
      const res = await api(`/api/collections/${c}/similar`, { id: like, k: 12, where, version });
      if (my !== seq) return;
      draw(res.hits);
      status(summary(res, t0) + (version !== v ? ` (more-like-this uses one version: ${res.version})` : ""));
    } else if (v === COMPARE) {
      const res = await api(`/api/collections/${c}/compare`, { query: q, k: 10, where });
      if (my !== seq) return;
      drawCompare(res);
      const parts = res.runs.map((r) => `${r.version} ${r.error ? "error" : `${r.took_ms.toFixed(1)} ms`}`);
      status(`Compared ${res.runs.length} encoders: ${parts.join(" · ")}`);
    } else {
      const res = await api(`/api/collections/${c}/search`, { query: q, k: 12, where, version: v || undefined });
      if (my !== seq) return;
      draw(res.hits);
      status(summary(res, t0));
    }
  } catch (err) {
    if (my !== seq) return;
    $("#results").replaceChildren();
    status(err.message, true);
  } finally {
    if (my === seq) $("#go").disabled = false;
  }
}

function summary(res, t0) {
  const s = res.stages;
  const stages = `encode ${s.encode_ms.toFixed(1)} · search ${s.search_ms.toFixed(1)} · rank ${s.rank_ms.toFixed(1)} ms`;
  const total = Math.round(performance.now() - t0);
  return `${res.hits.length} results · ${res.encoder} · server ${res.took_ms.toFixed(1)} ms (${stages})` +
    `${res.cached ? " · cached" : ""} · page ${total} ms`;
}

function draw(hits) {
  const tpl = $("#card-template");
  if (!hits.length) {
    $("#results").replaceChildren(el("p", { class: "empty" }, "Nothing matched. Loosen the filters or try other words."));
    return;
  }
  $("#results").replaceChildren(...hits.map((h) => {
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.dataset.id = h.id;
    card.querySelector(".title").textContent = h.title;
    // the server shows hits (embedscope.display.show): title, subtitle, year, tags, image, snippet
    card.querySelector(".byline").textContent = [h.subtitle, h.year].filter(Boolean).join(" · ");
    if (h.tags.length) card.querySelector(".tags").replaceChildren(...h.tags.slice(0, 3).map((t) => el("span", {}, t)));
    card.querySelector(".snippet").textContent = h.snippet;
    card.querySelector(".score").textContent = h.score.toFixed(3);
    const thumb = card.querySelector(".thumb");
    thumb.textContent = (h.title || "?").trim().charAt(0).toUpperCase();
    if (h.image) {
      const img = el("img", { src: h.image, alt: "", loading: "lazy", referrerpolicy: "no-referrer" });
      img.addEventListener("load", () => thumb.replaceChildren(img));
    }
    const link = card.querySelector(".more-like");
    link.href = `?c=${encodeURIComponent($("#collection").value)}&like=${encodeURIComponent(h.id)}`;
    link.setAttribute("aria-label", `More like ${h.title}`);
    link.addEventListener("click", (e) => { e.preventDefault(); moreLike(h.id, h.title); });
    return card;
  }));
}

function drawCompare(res) {
  const seen = {};
  for (const r of res.runs) for (const h of r.hits) seen[h.id] = (seen[h.id] || 0) + 1;
  const cols = res.runs.map((r) =>
    el("section", { class: "col", "aria-label": r.version },
      el("h2", {}, `${r.version}${r.took_ms !== null ? ` · ${r.took_ms.toFixed(1)} ms` : ""}`),
      r.error ? el("p", { class: "status error" }, r.error) :
        el("ol", {}, ...r.hits.map((h) => el("li", { class: seen[h.id] > 1 ? "shared" : "" },
          el("a", { href: "#", onclick: (e) => { e.preventDefault(); moreLike(h.id, h.title); } }, h.title))))));
  $("#results").replaceChildren(el("div", { class: "compare" }, ...cols),
    el("p", { class: "empty" }, "Highlighted: found by more than one encoder."));
}

// --- wiring ------------------------------------------------------------------------------------------
async function start() {
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("#mode-options").addEventListener("change", () => {
    const p = state();
    p.set("v", mode());
    setState(p);
    run();
  });
  $("#clear-filters").addEventListener("click", () => {
    for (const i of document.querySelectorAll("#filters input")) i.value = "";
    if (state().get("q") || state().get("like")) submit();
    else countFilters();
  });
  $("#collection").addEventListener("change", async () => {
    const p = new URLSearchParams({ c: $("#collection").value });
    setState(p);
    await loadInfo($("#collection").value);
    run();
  });
  window.addEventListener("popstate", async () => {
    if (state().get("c") && state().get("c") !== $("#collection").value) {
      $("#collection").value = state().get("c");
      await loadInfo($("#collection").value);
    }
    $("#q").value = state().get("q") || "";
    const v = state().get("v");
    if (v) for (const r of document.querySelectorAll("input[name=version]")) r.checked = r.value === v;
    buildFilters();
    run();
  });
  try {
    const name = await loadCollections();
    if (!name) return;
    await loadInfo(name);
    $("#q").value = state().get("q") || "";
    document.body.dataset.ready = "1"; // for tests: the page is wired up
    run();
  } catch (err) {
    status(`Could not load the collection: ${err.message}`, true);
  }
}

start();
