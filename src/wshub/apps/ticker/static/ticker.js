// wshub ticker — the live prices page, built on the hub's browser client (wshub.js).
//
// Channels (docs/ticker.md): `ticker:index` carries a snapshot every few seconds (the
// instruments and their sampled prices over the last minutes); `ticker:<SYMBOL>` carries one
// instrument's ticks {symbol, price, open}. One channel per instrument, because the `ticker`
// namespace keeps the newest publication of each channel (history size 1) and conflates a
// lagging subscriber's queue to the newest one (`latest` policy): both then hold per instrument.
//
// Every subscription asks for `recent: 1`, so a page that loads, or comes back after a cut
// whose publications the hub no longer has, shows the current price at once; `fillGaps:
// false`, because an older price that was skipped is worth nothing. A row never goes back to
// an older offset of the same stream.

import { HubClient } from "wshub";
import { ConnectionView, wsUrl } from "wshub-ui";

const INDEX_CHANNEL = "ticker:index";
const WINDOW_MS = 5 * 60 * 1000; // what the charts show
const MAX_LIVE_POINTS = 600; // per instrument, whatever the feed's rate
const FLASH_MS = 700;
const SPARK_W = 120;
const SPARK_H = 32;
const BIG_W = 800;
const BIG_H = 300;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

const ui = {
  app: $("app"),
  status: $("connection-status"),
  banner: $("banner"),
  dashboard: $("dashboard"),
  rows: $("rows"),
  empty: $("empty"),
  noMatch: $("no-match"),
  count: $("summary-count"),
  updated: $("summary-updated"),
  filter: $("filter"),
  detail: $("detail"),
  back: $("back"),
  prev: $("prev"),
  next: $("next"),
  detailSymbol: $("detail-symbol"),
  detailName: $("detail-name"),
  detailPrice: $("detail-price"),
  detailChange: $("detail-change"),
  detailOpen: $("detail-open"),
  detailHigh: $("detail-high"),
  detailLow: $("detail-low"),
  detailTime: $("detail-time"),
  detailOffset: $("detail-offset"),
  chart: $("detail-chart"),
  chartLabels: $("chart-labels"),
  axisStart: $("axis-start"),
  axisEnd: $("axis-end"),
};

// ---- small helpers -------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

const formatPrice = (price) => price.toFixed(2);

function formatChange(price, open) {
  const diff = price - open;
  const pct = open > 0 ? (diff / open) * 100 : 0;
  const sign = diff > 0 ? "+" : diff < 0 ? "−" : "±";
  return `${sign}${Math.abs(diff).toFixed(2)} (${sign}${Math.abs(pct).toFixed(2)}%)`;
}

function direction(price, open) {
  return price > open ? "up" : price < open ? "down" : "flat";
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

function isTick(data) {
  return (
    data !== null &&
    typeof data === "object" &&
    typeof data.price === "number" &&
    data.price > 0 &&
    typeof data.open === "number" &&
    data.open > 0
  );
}

// ---- state ---------------------------------------------------------------------------------

/** One instrument: what the hub told us, and its row. */
class Instrument {
  constructor(symbol, name, open) {
    this.symbol = symbol;
    this.name = name;
    this.open = open;
    this.channel = `ticker:${symbol}`;
    this.price = null;
    this.offset = null; // hub offset of the tick shown
    this.epoch = null;
    this.time = null; // ms, the hub's time of the tick shown
    this.samples = []; // [{t, p}] from the latest snapshot
    this.interval = 5000; // ms between the snapshot's samples
    this.live = []; // [{t, p}] ticks received, oldest first
    this.row = null;
    this.cells = null;
    this.flashTimer = null;
  }

  /** Samples where no tick was seen, merged with the ticks: the chart's points. */
  points() {
    const live = this.live;
    const merged = [];
    let j = 0;
    for (const sample of this.samples) {
      while (j < live.length && live[j].t < sample.t - this.interval) merged.push(live[j++]);
      const covered = j < live.length && live[j].t <= sample.t + this.interval;
      if (!covered) merged.push(sample);
    }
    while (j < live.length) merged.push(live[j++]);
    return merged;
  }
}

const app = {
  client: null,
  instruments: new Map(), // symbol -> Instrument, in index order
  order: [], // symbols, in index order
  now: 0, // ms: the newest time seen in the data (the charts' right edge)
  earliest: Infinity, // ms: the oldest time seen in the data (charts start there if later)
  dirty: new Set(), // instruments whose chart needs drawing
  frame: 0,
  selected: null, // the symbol in the detail view
  pushedDetail: false, // the detail view was opened from the list (Back can go back)
  connection: new ConnectionView(
    { status: ui.status, banner: ui.banner, root: ui.app },
    {
      reconnecting: ["Connection lost — reconnecting…", " Prices are frozen until it is back."],
      offline: ["You are offline.", " Prices resume when your network is back."],
      // The resubscribes carry `since`: the newest price of each instrument comes with them.
      recovered: ["Back online.", " Prices are current again."],
    },
  ),
};

// ---- connection ----------------------------------------------------------------------------

function start() {
  const params = new URLSearchParams(location.search);
  const client = new HubClient(wsUrl(), { token: params.get("token") || undefined });
  app.client = client;
  app.connection.watch(client);
  client.addEventListener("error", (event) => {
    event.preventDefault();
    console.warn("wshub ticker:", event.detail.error);
  });
  client.connect();
  client
    .subscribe(INDEX_CHANNEL, {
      recent: 1,
      fillGaps: false,
      onPublication: (pub) => onIndex(pub),
      onSubscribe: () => showEmpty(),
    })
    .catch((error) => app.connection.say("offline", "Cannot load the instruments.", ` ${error.message}`));
}

// ---- publications --------------------------------------------------------------------------

/** A snapshot on ticker:index: the instruments and their recent samples. */
function onIndex(pub) {
  const data = pub.data;
  if (!data || !Array.isArray(data.instruments) || typeof data.time !== "number") return;
  const interval = Math.max(1, Number(data.interval) || 5) * 1000;
  let added = false;
  for (const entry of data.instruments) {
    if (!entry || typeof entry.symbol !== "string" || !/^[A-Z][A-Z0-9]{0,7}$/.test(entry.symbol)) {
      continue;
    }
    let inst = app.instruments.get(entry.symbol);
    if (!inst) {
      inst = new Instrument(entry.symbol, String(entry.name || entry.symbol), Number(entry.open) || 0);
      app.instruments.set(inst.symbol, inst);
      app.order.push(inst.symbol);
      buildRow(inst);
      subscribeInstrument(inst);
      added = true;
    }
    inst.name = String(entry.name || inst.name);
    if (Number(entry.open) > 0) inst.open = Number(entry.open);
    const series = Array.isArray(entry.series) ? entry.series : [];
    const first = data.time - (series.length - 1) * interval;
    inst.interval = interval;
    inst.samples = series
      .map((p, i) => ({ t: first + i * interval, p: Number(p) }))
      .filter((point) => point.p > 0);
    if (inst.samples.length > 0) app.earliest = Math.min(app.earliest, inst.samples[0].t);
    if (inst.price === null && inst.samples.length > 0) {
      // No tick yet: the newest sample stands in (without an offset) until one arrives.
      showPrice(inst, inst.samples[inst.samples.length - 1].p, false);
    }
    markDirty(inst);
  }
  app.now = Math.max(app.now, data.time);
  if (added) {
    ui.count.textContent = `${app.order.length} instruments`;
    applyFilter();
    if (app.selected === null) openFromHash();
  }
  showEmpty();
}

function subscribeInstrument(inst) {
  app.client
    .subscribe(inst.channel, {
      recent: 1,
      fillGaps: false,
      onPublication: (pub) => onTick(inst, pub),
    })
    .catch((error) => {
      inst.row.dataset.state = "error";
      inst.row.title = `Not subscribed: ${error.message}`;
    });
}

/** A tick on ticker:<SYMBOL>. */
function onTick(inst, pub) {
  if (!isTick(pub.data)) return;
  // Offsets only grow within a stream; a new epoch (the hub restarted) starts again.
  if (inst.epoch === pub.epoch && inst.offset !== null && pub.offset <= inst.offset) return;
  if (inst.epoch !== null && inst.epoch !== pub.epoch) inst.live = [];
  inst.epoch = pub.epoch;
  inst.offset = pub.offset;
  inst.time = pub.time;
  inst.open = pub.data.open;
  const previous = inst.price;
  showPrice(inst, pub.data.price, true);
  if (previous !== null && previous !== pub.data.price) flash(inst, pub.data.price > previous ? "up" : "down");
  const live = inst.live;
  live.push({ t: pub.time, p: pub.data.price });
  const oldest = pub.time - WINDOW_MS;
  let drop = 0;
  while (drop < live.length && (live[drop].t < oldest || live.length - drop > MAX_LIVE_POINTS)) drop++;
  if (drop) live.splice(0, drop);
  app.now = Math.max(app.now, pub.time);
  app.earliest = Math.min(app.earliest, pub.time);
  ui.updated.textContent = ` · updated ${timeFormat.format(new Date(app.now))}`;
  markDirty(inst);
}

// ---- the list ------------------------------------------------------------------------------

function buildRow(inst) {
  const li = el("li");
  const row = el("a", "row");
  row.href = `#${inst.symbol}`;
  row.dataset.testid = "ticker-row";
  row.dataset.symbol = inst.symbol;
  row.dataset.price = "";
  row.dataset.offset = "";
  row.dataset.direction = "flat";
  const id = el("span", "instrument");
  id.append(el("span", "symbol", inst.symbol), el("span", "name", inst.name));
  const price = el("span", "price num", "—");
  const change = el("span", "change num", "");
  const spark = svgEl("svg", {
    class: "spark",
    viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
    preserveAspectRatio: "none",
    "aria-hidden": "true",
  });
  const line = svgEl("path", { class: "spark-line", d: "" });
  spark.append(line);
  row.append(id, price, change, spark);
  row.addEventListener("click", () => {
    app.pushedDetail = true;
  });
  li.append(row);
  ui.rows.append(li);
  inst.row = row;
  inst.cells = { li, name: id.lastChild, price, change, line };
}

function showPrice(inst, price, fromTick) {
  inst.price = price;
  const text = formatPrice(price);
  const row = inst.row;
  row.dataset.price = text;
  if (fromTick) row.dataset.offset = String(inst.offset);
  row.dataset.direction = direction(price, inst.open);
  inst.cells.price.textContent = text;
  inst.cells.change.textContent = formatChange(price, inst.open);
  inst.cells.name.textContent = inst.name;
  row.setAttribute(
    "aria-label",
    `${inst.symbol} ${inst.name}: ${text}, ${formatChange(price, inst.open)} since the open`,
  );
  if (app.selected === inst.symbol) renderDetailQuote(inst);
}

function flash(inst, way) {
  const row = inst.row;
  if (inst.flashTimer === null) {
    row.classList.add(`flash-${way}`);
  } else {
    // Already flashing: change the colour without restarting (a restart costs a reflow,
    // which a fast feed would pay for every tick).
    clearTimeout(inst.flashTimer);
    row.classList.toggle("flash-up", way === "up");
    row.classList.toggle("flash-down", way === "down");
  }
  inst.flashTimer = setTimeout(() => {
    inst.flashTimer = null;
    row.classList.remove("flash-up", "flash-down");
  }, FLASH_MS);
}

function showEmpty() {
  ui.empty.hidden = app.order.length > 0;
}

function applyFilter() {
  const query = ui.filter.value.trim().toLowerCase();
  let shown = 0;
  for (const symbol of app.order) {
    const inst = app.instruments.get(symbol);
    const match = !query || symbol.toLowerCase().includes(query) || inst.name.toLowerCase().includes(query);
    inst.cells.li.hidden = !match;
    if (match) shown += 1;
  }
  ui.noMatch.hidden = shown > 0 || app.order.length === 0;
}

function visibleRows() {
  return app.order.map((s) => app.instruments.get(s)).filter((inst) => !inst.cells.li.hidden);
}

// ---- charts --------------------------------------------------------------------------------

function markDirty(inst) {
  app.dirty.add(inst);
  if (!app.frame) app.frame = requestAnimationFrame(drawCharts);
}

function drawCharts() {
  app.frame = 0;
  const dirty = app.dirty;
  app.dirty = new Set();
  for (const inst of dirty) {
    const points = inst.points();
    inst.cells.line.setAttribute("d", linePath(points, SPARK_W, SPARK_H, 2).line);
    if (app.selected === inst.symbol) renderChart(inst, points);
  }
}

/** The charts' time span: WINDOW_MS up to the newest data, or less while the feed is young. */
function span() {
  const left = Math.max(app.now - WINDOW_MS, Math.min(app.earliest, app.now));
  return { left, width: Math.max(app.now - left, 1000) };
}

/** Scale points into a w×h box, the x axis over span(). */
function scale(points, w, h, pad) {
  const { left, width } = span();
  const visible = points.filter((point) => point.t >= left);
  if (visible.length === 0) return null;
  let low = Infinity;
  let high = -Infinity;
  for (const { p } of visible) {
    low = Math.min(low, p);
    high = Math.max(high, p);
  }
  if (high - low < 0.01) {
    high += 0.01;
    low -= 0.01;
  }
  const x = (t) => ((t - left) / width) * w;
  const y = (p) => pad + (1 - (p - low) / (high - low)) * (h - 2 * pad);
  return { visible, low, high, x, y };
}

function linePath(points, w, h, pad) {
  const s = scale(points, w, h, pad);
  if (!s) return { line: "", area: "", s };
  // The last price holds until now: the line ends at the right edge.
  const coords = s.visible.map((point) => `${s.x(point.t).toFixed(1)},${s.y(point.p).toFixed(1)}`);
  const lastY = s.y(s.visible[s.visible.length - 1].p).toFixed(1);
  const line = `M${coords.join("L")}L${w},${lastY}`;
  const firstX = s.x(s.visible[0].t).toFixed(1);
  const area = `${line}L${w},${h}L${firstX},${h}Z`;
  return { line, area, s };
}

function renderChart(inst, points) {
  const { line, area, s } = linePath(points, BIG_W, BIG_H, 16);
  const nodes = [];
  const labels = [];
  if (s) {
    for (let i = 0; i <= 4; i += 1) {
      const price = s.low + ((s.high - s.low) * i) / 4;
      const y = s.y(price);
      nodes.push(svgEl("line", { class: "grid", x1: 0, x2: BIG_W, y1: y, y2: y }));
      const label = el("span", "y-label", formatPrice(price));
      label.style.top = `${(y / BIG_H) * 100}%`;
      labels.push(label);
    }
    if (inst.open >= s.low && inst.open <= s.high) {
      const y = s.y(inst.open);
      nodes.push(svgEl("line", { class: "open-line", x1: 0, x2: BIG_W, y1: y, y2: y }));
    }
    nodes.push(svgEl("path", { class: "area", d: area }));
    nodes.push(svgEl("path", { class: "line", d: line }));
  }
  ui.chart.dataset.direction = direction(inst.price ?? inst.open, inst.open);
  ui.chart.dataset.points = String(s ? s.visible.length : 0);
  ui.chart.replaceChildren(...nodes);
  ui.chartLabels.replaceChildren(...labels);
  const { left, width } = span();
  ui.axisStart.textContent = s ? timeFormat.format(new Date(left)) : "";
  ui.axisEnd.textContent = s ? timeFormat.format(new Date(left + width)) : "";
  const visible = s ? s.visible : [];
  const prices = visible.map((point) => point.p);
  ui.detailHigh.textContent = prices.length ? formatPrice(Math.max(...prices)) : "—";
  ui.detailLow.textContent = prices.length ? formatPrice(Math.min(...prices)) : "—";
}

// ---- the detail view -----------------------------------------------------------------------

function renderDetailQuote(inst) {
  ui.detailSymbol.textContent = inst.symbol;
  ui.detailName.textContent = inst.name;
  ui.detailPrice.textContent = inst.price === null ? "—" : formatPrice(inst.price);
  ui.detailChange.textContent = inst.price === null ? "" : formatChange(inst.price, inst.open);
  ui.detailChange.dataset.direction = direction(inst.price ?? inst.open, inst.open);
  ui.detailOpen.textContent = formatPrice(inst.open);
  ui.detailTime.textContent = inst.time === null ? "—" : timeFormat.format(new Date(inst.time));
  ui.detailOffset.textContent = inst.offset === null ? "—" : String(inst.offset);
  document.title = `${inst.symbol} ${ui.detailPrice.textContent} — wshub ticker`;
}

function showDetail(symbol) {
  const inst = app.instruments.get(symbol);
  if (!inst) return false;
  app.selected = symbol;
  renderDetailQuote(inst);
  renderChart(inst, inst.points());
  ui.dashboard.hidden = true;
  ui.detail.hidden = false;
  ui.detail.focus();
  return true;
}

function showList() {
  const symbol = app.selected;
  app.selected = null;
  ui.detail.hidden = true;
  ui.dashboard.hidden = false;
  document.title = "wshub ticker — live prices";
  const inst = symbol && app.instruments.get(symbol);
  if (inst) {
    inst.row.focus();
    inst.row.scrollIntoView({ block: "nearest" });
  }
}

/** Follow the URL: `#SYMBOL` is the detail view of SYMBOL, no hash the list. */
function openFromHash() {
  const symbol = decodeURIComponent(location.hash.slice(1)).toUpperCase();
  if (symbol && app.instruments.has(symbol)) {
    if (app.selected !== symbol) showDetail(symbol);
  } else if (app.selected !== null) {
    showList();
  }
}

function closeDetail() {
  if (app.pushedDetail) {
    app.pushedDetail = false;
    history.back(); // the hashchange shows the list
  } else {
    history.replaceState(null, "", location.pathname + location.search);
    showList();
  }
}

function step(delta) {
  const rows = visibleRows();
  if (rows.length === 0) return;
  const index = rows.findIndex((inst) => inst.symbol === app.selected);
  const next = rows[(index + delta + rows.length) % rows.length];
  history.replaceState(null, "", `#${next.symbol}`);
  showDetail(next.symbol);
}

// ---- keyboard and events -------------------------------------------------------------------

function onKey(event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const inFilter = event.target === ui.filter;
  if (app.selected !== null) {
    if (event.key === "Escape") {
      event.preventDefault();
      closeDetail();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      step(event.key === "ArrowLeft" ? -1 : 1);
    }
    return;
  }
  if (inFilter) {
    if (event.key === "Escape") {
      ui.filter.value = "";
      applyFilter();
    } else if (event.key === "ArrowDown" || event.key === "Enter") {
      const first = visibleRows()[0];
      if (first) {
        event.preventDefault();
        first.row.focus();
      }
    }
    return;
  }
  if (event.key === "/") {
    event.preventDefault();
    ui.filter.focus();
    return;
  }
  const keys = ["ArrowDown", "ArrowUp", "Home", "End"];
  if (!keys.includes(event.key)) return;
  const rows = visibleRows();
  if (rows.length === 0) return;
  event.preventDefault();
  const index = rows.findIndex((inst) => inst.row === document.activeElement);
  let target = 0;
  if (event.key === "End") target = rows.length - 1;
  else if (event.key === "ArrowDown") target = index < 0 ? 0 : Math.min(index + 1, rows.length - 1);
  else if (event.key === "ArrowUp") target = index < 0 ? 0 : Math.max(index - 1, 0);
  rows[target].row.focus();
}

ui.filter.addEventListener("input", applyFilter);
ui.back.addEventListener("click", closeDetail);
ui.prev.addEventListener("click", () => step(-1));
ui.next.addEventListener("click", () => step(1));
document.addEventListener("keydown", onKey);
window.addEventListener("hashchange", () => openFromHash());

start();
