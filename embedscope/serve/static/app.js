// embedscope web page: plain JS, no build step, no network beyond this server.
// State lives in the URL (?c=&q=&v=&like=&f.<field>=) so back/forward and shared links work.
"use strict";

const $ = (sel) => document.querySelector(sel);
const COMPARE = "__compare__";
let info = null; // /api/collections/{c}
let seq = 0; // request counter: only the latest response is drawn
let experiment = null; // the collection's running online experiment, if any
let shown = null; // {experiment, impression} of the results on screen, when they are an experiment's list
let shownIds = []; // ids of the results on screen, highlighted on the map
let map = null; // {key, view: EmbedMap} once the map panel has been opened

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

// A random id kept in localStorage: the server buckets A/B experiments by it and ties clicks to their
// list. getRandomValues, not randomUUID, which only exists on https or localhost.
function sessionId() {
  const key = "embedscope.session";
  const fresh = () => [...crypto.getRandomValues(new Uint8Array(16))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  try {
    let id = localStorage.getItem(key);
    if (!id) { id = fresh(); localStorage.setItem(key, id); }
    return id;
  } catch {
    return (sessionId.memory ||= fresh()); // storage disabled: one id for this page's life
  }
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

// the banner: which experiment the default search serves ({name, method}, or null for none)
function showExperiment(exp) {
  const banner = $("#experiment-banner");
  banner.hidden = !exp;
  if (exp) {
    banner.replaceChildren("Experiment ", el("strong", {}, exp.name), ` (${exp.method}) is running: ` +
      "the default search shows its results, and opening a result counts as a click.");
  }
}

async function loadInfo(name) {
  const c = encodeURIComponent(name);
  const [collection, experiments] = await Promise.all([
    api(`/api/collections/${c}`), api(`/api/collections/${c}/experiments`).catch(() => [])]);
  info = collection;
  experiment = experiments.find((e) => e.status === "running") || null;
  showExperiment(experiment);
  // two words, as in the CLI and the API: the "default search" answers a query when none is chosen
  // (a version or a recipe); the "active version" gives more-like-this and the map their vectors
  const versions = info.versions;
  const defaultSearch = info.default_search || info.active_version;
  const hint = (name, about) => [about, name === defaultSearch ? "default search" : ""].filter(Boolean).join(" · ");
  const opts = versions.map((v) => ({
    value: v.name,
    label: v.name,
    hint: hint(v.name, v.encoder.name !== v.name ? v.encoder.name : ""),
  }));
  // search recipes (e.g. hybrid = bm25 + minilm fused) are searched by name, like versions
  for (const r of info.recipes || []) {
    opts.push({ value: r.name, label: r.name, hint: hint(r.name, `${r.parts.join(" + ")}, ${r.fusion}`) });
  }
  if (opts.length > 1) opts.push({ value: COMPARE, label: "side by side", hint: "" });
  // the default search (no version named) is the one a running experiment serves
  if (experiment) opts.unshift({ value: "", label: "default", hint: "experiment" });
  const current = state().get("v") || (experiment ? "" : defaultSearch || (opts[0] && opts[0].value));
  $("#mode-options").replaceChildren(
    ...opts.map((o) =>
      el("label", {},
        el("input", { type: "radio", name: "version", value: o.value, checked: o.value === current }),
        o.label, o.hint ? el("small", {}, ` ${o.hint}`) : null)
    )
  );
  $("#modes").hidden = opts.length < 2;
  if (map) loadMap();
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
  if (!like && !q) { clearResults(); status(""); return; }
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
      status(summary(res, t0) + (version !== v ? ` (more-like-this uses the active version: ${res.version})` : ""));
    } else if (v === COMPARE) {
      const res = await api(`/api/collections/${c}/compare`, { query: q, k: 10, where });
      if (my !== seq) return;
      drawCompare(res);
      const parts = res.runs.map((r) => `${r.version} ${r.error ? "error" : `${r.took_ms.toFixed(1)} ms`}`);
      status(`Compared ${res.runs.length} encoders: ${parts.join(" · ")}`);
    } else {
      const res = await api(`/api/collections/${c}/search`,
        { query: q, k: 12, where, version: v || undefined, session: v ? undefined : sessionId() });
      if (my !== seq) return;
      draw(res.hits, res.experiment, res.good_match === false ? q : null);
      if (!v) showExperiment(res.experiment); // started or stopped since the page loaded
      status(summary(res, t0) + (res.experiment ? ` · experiment ${res.experiment.name}` : ""));
    }
  } catch (err) {
    if (my !== seq) return;
    clearResults();
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

function clearResults() {
  shown = null;
  highlight([]);
  $("#results").replaceChildren();
}

// The match a card shows: the relevance level the server computed (embedscope/search/relevance.py, a
// stated scale: docs/serve.md), else the raw score, named as what it is.
function matchText(h, exp) {
  if (h.match) return { text: `${h.match} match`, title: `relevance ${h.relevance.toFixed(2)} of 1 (score ${h.score.toFixed(3)})` };
  // an experiment's list mixes two rankers whose raw scores are not comparable: they are not shown
  if (exp) return { text: "", title: "" };
  return { text: `score ${h.score.toFixed(3)}`, title: "this search's own score, on no fixed scale: compare within the list only" };
}

// `weakQuery`: the search found no good match (no hit reaches relevance 0.5); the nearest items are
// shown below a notice that says so, dimmed
function draw(hits, exp = null, weakQuery = null) {
  const tpl = $("#card-template");
  shown = exp ? { experiment: exp.name, impression: exp.impression } : null;
  highlight(hits.map((h) => h.id));
  if (!hits.length) {
    $("#results").replaceChildren(el("p", { class: "empty" }, "Nothing matched. Loosen the filters or try other words."));
    return;
  }
  $("#results").classList.toggle("weak", !!weakQuery);
  const notice = weakQuery ? el("p", { class: "no-match", role: "note" },
    el("strong", {}, "No good match"), ` for “${weakQuery}”: these are the closest items, but none is close. ` +
    "Try other words, or fewer of them.") : null;
  $("#results").replaceChildren(...(notice ? [notice] : []), ...hits.map((h, position) => {
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.dataset.id = h.id;
    card.dataset.position = position;
    card.setAttribute("aria-label", `${h.title}: press Enter for the full text`);
    card.addEventListener("click", (e) => openResult(card, h, position, !!e.target.closest(".more-like")));
    card.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target === card) { e.preventDefault(); openResult(card, h, position, false); }
    });
    card.querySelector(".title").textContent = h.title;
    // the server shows hits (embedscope.display.show): title, subtitle, year, tags, image, snippet
    card.querySelector(".byline").textContent = [h.subtitle, h.year].filter(Boolean).join(" · ");
    if (h.tags.length) card.querySelector(".tags").replaceChildren(...h.tags.slice(0, 3).map((t) => el("span", {}, t)));
    card.querySelector(".snippet").textContent = h.snippet;
    const match = matchText(h, exp);
    const badge = card.querySelector(".score");
    badge.textContent = match.text;
    badge.title = match.title;
    if (h.match) badge.dataset.match = h.match;
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

// A result was opened (mouse click, or Enter on the focused card): count the click when the list is
// an experiment's, and show the item's full text in the card (unless it was "More like this").
function openResult(card, hit, position, leaving) {
  if (shown) logClick(shown, position, hit.id);
  if (leaving || card.classList.contains("expanded")) return;
  card.classList.add("expanded");
  api(`/api/collections/${encodeURIComponent($("#collection").value)}/items/${encodeURIComponent(hit.id)}`)
    .then((item) => {
      // the text often starts with the title (the ingest template); the card shows it already
      const text = item.text.startsWith(hit.title) ? item.text.slice(hit.title.length).replace(/^[\s.:-]+/, "") : item.text;
      card.querySelector(".snippet").textContent = text || item.text;
    })
    .catch(() => {}); // the snippet stays; nothing else depends on it
}

function logClick(list, position, id) {
  const c = encodeURIComponent($("#collection").value);
  fetch(`/api/collections/${c}/click`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ ...list, position, item: id }),
    keepalive: true, // still sent when the click leads away from the page
  }).then((res) => {
    if (res.ok) document.body.dataset.clicks = String(Number(document.body.dataset.clicks || 0) + 1);
  }).catch(() => {}); // a lost click must not break the page
}

// --- the map: the collection's items in 2-D (embedscope project), the results highlighted ----------
function mapVersion() {
  const v = mode();
  return v && v !== COMPARE ? v : info.active_version;
}

async function loadMap() {
  const c = $("#collection").value;
  const version = mapVersion();
  const method = $("#map-method").value;
  const key = `${c}|${version}|${method}`;
  if (map && map.key === key) return;
  map = { key, view: null };
  const box = $("#map");
  box.replaceChildren();
  const say = (text, isError = false) => {
    $("#map-status").textContent = text;
    $("#map-status").classList.toggle("error", isError);
  };
  say("Loading the map (computed on first use, a second or so for PCA)…");
  try {
    const points = await api(`/api/collections/${encodeURIComponent(c)}/projection`,
      { version, method: method || undefined, color_by: info.display.tags || undefined });
    if (map.key !== key) return; // another map was asked for meanwhile
    const canvasBox = el("div", { class: "map-canvas" });
    box.replaceChildren(canvasBox);
    map.view = new EmbedMap(canvasBox, points, { onSelect: (id, i) => moreLike(id, points.titles[i]) });
    const which = points.version === info.active_version ? " (the active version)" : "";
    map.about = `${points.method.toUpperCase()} of ${points.ids.length.toLocaleString()} items of ` +
      `${points.version}${which}${points.cached ? "" : ` (computed in ${points.seconds} s)`}`;
    highlight(shownIds);
  } catch (err) {
    if (map.key === key) { say(err.message, true); map.key = null; } // opening it again retries
  }
}

function highlight(ids) {
  shownIds = ids;
  if (!map || !map.view) return;
  const found = map.view.highlightIds(ids);
  const note = ids.length ? ` · ${found} of the ${ids.length} results on the map, highlighted` : "";
  $("#map-status").textContent = `${map.about}${note}. Click a point for more like it.`;
  $("#map-status").classList.remove("error");
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
  shown = null;
  highlight(Object.keys(seen));
  $("#results").replaceChildren(el("div", { class: "compare" }, ...cols),
    el("p", { class: "empty" }, "Highlighted: found by more than one encoder."));
}

// --- wiring ------------------------------------------------------------------------------------------
async function start() {
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("#mode-options").addEventListener("change", () => {
    const p = state();
    if (mode()) p.set("v", mode());
    else p.delete("v");
    setState(p);
    run();
    if (map) loadMap();
  });
  $("#map-box").addEventListener("toggle", () => { if ($("#map-box").open) loadMap(); });
  $("#map-method").addEventListener("change", () => loadMap());
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
    const v = state().get("v") || (experiment ? "" : null);
    if (v !== null) for (const r of document.querySelectorAll("input[name=version]")) r.checked = r.value === v;
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
