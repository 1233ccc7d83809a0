// Embedding map: a canvas scatter of items projected to 2-D (`embedscope project`), used by the
// standalone HTML page that command writes and by the web page. Hover shows a title; titles
// matching a search, or a query's results, are highlighted.
// Hand-written (no charting library): the page must work offline with no build step and load
// nothing from a CDN, and a scatter with hover is a small job for a canvas.
"use strict";

class EmbedMap {
  // points: {ids, titles, details (authors · year · tags per point, optional), x, y,
  //          colors (hex per point or null), legend: [{label, color}]}
  constructor(container, points, options = {}) {
    this.points = points;
    this.n = points.ids.length;
    this.onSelect = options.onSelect || null;
    this.marked = null; // Set of highlighted point indexes, or null
    this.hover = -1;
    container.classList.add("embedmap");
    if (getComputedStyle(container).position === "static") container.style.position = "relative";
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", `map of ${this.n} items; hover a point to see its title`);
    this.canvas.style.cssText = "width:100%;height:100%;display:block;cursor:crosshair";
    this.tip = document.createElement("div");
    this.tip.className = "embedmap-tip";
    this.tip.style.cssText =
      "position:absolute;pointer-events:none;background:#222;color:#fff;padding:2px 6px;" +
      "border-radius:3px;font-size:12px;max-width:22rem;display:none;z-index:2";
    this.legend = this._legend();
    container.append(this.canvas, this.tip, this.legend);
    const xs = points.x, ys = points.y;
    this.bounds = {
      x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys),
    };
    this.canvas.addEventListener("mousemove", (e) => this._move(e));
    this.canvas.addEventListener("mouseleave", () => this._setHover(-1));
    this.canvas.addEventListener("click", (e) => {
      const i = this._nearest(e);
      if (i >= 0 && this.onSelect) this.onSelect(this.points.ids[i], i);
    });
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
  }

  _legend() {
    const list = document.createElement("ul");
    list.className = "embedmap-legend";
    list.style.cssText =
      "position:absolute;top:6px;right:6px;margin:0;padding:4px 8px;list-style:none;" +
      "background:rgba(255,255,255,.85);font-size:12px;border-radius:3px;max-width:40%";
    for (const entry of this.points.legend || []) {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      dot.style.cssText = `display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px;background:${entry.color}`;
      li.append(dot, document.createTextNode(entry.label));
      list.append(li);
    }
    list.hidden = !(this.points.legend || []).length;
    return list;
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.w = Math.max(r.width, 50);
    this.h = Math.max(r.height, 50);
    this.canvas.width = Math.round(this.w * dpr);
    this.canvas.height = Math.round(this.h * dpr);
    this.ctx = this.canvas.getContext("2d");
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // the legend keeps a column of its own on the right: no point is drawn under it
    this.padRight = this.legend.hidden ? 0 : this.legend.getBoundingClientRect().width + 12;
    this.draw();
  }

  _screen(i) {
    const b = this.bounds, pad = 14;
    const w = this.w - (this.padRight || 0);
    const sx = (w - 2 * pad) / (b.x1 - b.x0 || 1);
    const sy = (this.h - 2 * pad) / (b.y1 - b.y0 || 1);
    const s = Math.min(sx, sy); // equal scales: distances on screen mean the same both ways
    const ox = (w - s * (b.x1 - b.x0)) / 2, oy = (this.h - s * (b.y1 - b.y0)) / 2;
    return [ox + s * (this.points.x[i] - b.x0), this.h - (oy + s * (this.points.y[i] - b.y0))];
  }

  _color(i) {
    return this.points.colors ? this.points.colors[i] : "#1f77b4";
  }

  draw() {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.clearRect(0, 0, this.w, this.h);
    const dim = this.marked !== null;
    ctx.globalAlpha = dim ? 0.15 : 0.8;
    for (let i = 0; i < this.n; i++) {
      const [px, py] = this._screen(i);
      ctx.fillStyle = this._color(i);
      ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    if (dim) {
      for (const i of this.marked) this._dot(i, 4.5, "#000");
    }
    if (this.hover >= 0) this._dot(this.hover, 5.5, "#d62728");
  }

  _dot(i, radius, outline) {
    const ctx = this.ctx, [px, py] = this._screen(i);
    ctx.beginPath();
    ctx.arc(px, py, radius, 0, 2 * Math.PI);
    ctx.fillStyle = this._color(i);
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = outline;
    ctx.stroke();
  }

  _nearest(e) {
    const r = this.canvas.getBoundingClientRect();
    const mx = e.clientX - r.left, my = e.clientY - r.top;
    let best = -1, bestD = 64; // within 8 px
    for (let i = 0; i < this.n; i++) {
      const [px, py] = this._screen(i);
      const d = (px - mx) ** 2 + (py - my) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }

  _move(e) {
    const i = this._nearest(e);
    this._setHover(i);
    if (i >= 0) {
      const r = this.canvas.getBoundingClientRect();
      this.tip.style.left = `${Math.min(e.clientX - r.left + 12, this.w - 200)}px`;
      this.tip.style.top = `${e.clientY - r.top + 12}px`;
    }
  }

  _setHover(i) {
    if (i === this.hover) return;
    this.hover = i;
    this.tip.style.display = i >= 0 ? "block" : "none";
    const details = i >= 0 && this.points.details ? this.points.details[i] : "";
    const title = document.createElement("strong");
    title.textContent = i >= 0 ? this.points.titles[i] : "";
    this.tip.replaceChildren(title, ...(details ? [document.createElement("br"), details] : []));
    this.draw();
  }

  // Highlight the points whose title contains `text` (case-insensitive); "" clears. Returns the count.
  highlightTitles(text) {
    const needle = (text || "").trim().toLowerCase();
    if (!needle) return this.clear();
    const marked = new Set();
    this.points.titles.forEach((t, i) => { if (t.toLowerCase().includes(needle)) marked.add(i); });
    this.marked = marked;
    this.draw();
    return marked.size;
  }

  // Highlight the points of these item ids (a query's results); returns how many are on the map.
  highlightIds(ids) {
    const wanted = new Set(ids || []);
    const marked = new Set();
    this.points.ids.forEach((id, i) => { if (wanted.has(id)) marked.add(i); });
    this.marked = wanted.size ? marked : null;
    this.draw();
    return marked.size;
  }

  clear() {
    this.marked = null;
    this.draw();
    return 0;
  }
}

window.EmbedMap = EmbedMap;
