// wshub board — a shared whiteboard on the hub's `board:<name>` channels (docs/board.md).
//
// Everything that changes the board is a publication in the channel, applied by every page in
// offset order, so that all pages compute the same board:
//
//   {type: "stroke", id, color, width, points: [x0, y0, x1, y1, ...]}   a freehand stroke
//   {type: "undo", target: <offset of a stroke>}       removes it, if the undoer is its author
//   {type: "clear"}                                    removes every stroke before it
//   {type: "snapshot", base: B, strokes: [[offset, author, name, color, width, points], ...]}
//                        the whole board after applying every publication up to offset B
//
// The history keeps only the last `history_size` publications, so the pages post a snapshot
// every quarter of it; a newcomer starts from the latest snapshot in the history and applies
// what follows its base. Cursors are ephemeral publications: never stored, at most 10 a second.

import { HubClient, newMessageId, State } from "wshub";
import { ConnectionView, wsUrl } from "wshub-ui";

const BOARD_W = 1600;
const BOARD_H = 1000;
const NAME_RE = /^[A-Za-z0-9_\-.=@+,!~]{1,200}$/;
const TAB_RE = /^[0-9a-f]{8,64}$/;
const DEFAULT_BOARD = "main";
const MAX_NAME = 32;
const MAX_POINTS = 1000; // a longer stroke is split in several publications
const MIN_STEP = 2; // board units between two recorded points
const CURSOR_INTERVAL = 100; // ms between two cursor publications: at most 10 a second
const CURSOR_SHOW_FOR = 5000; // ms a silent remote cursor stays visible
const SIZE_MARGIN = 512; // bytes kept free under max_publication_size for the snapshot envelope
const COLORS = ["ink", "red", "orange", "green", "blue", "violet"];
const WIDTHS = [2, 4, 8, 16];
const NAME_KEY = "wshub-board:name";
const TAB_KEY = "wshub-board:tab";
const CHAT_NICK_KEY = "wshub-chat:nick";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const HISTORY_SIZE = Math.max(4, Number(meta("board-history-size")) || 1000);
const MAX_PUBLICATION_SIZE = Number(meta("board-max-publication-size")) || 65536;
/** Publications after the latest snapshot's base before its author posts a new snapshot. */
const SNAPSHOT_EVERY = Math.max(2, Math.floor(HISTORY_SIZE / 4));
/** A subscribe brings back this many publications: the whole history the hub keeps. */
const RECENT = Math.min(HISTORY_SIZE, 1000);

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const encoder = new TextEncoder();

const ui = {
  app: $("app"),
  status: $("connection-status"),
  banner: $("banner"),
  boardName: $("board-name"),
  canvas: $("board-canvas"),
  strokes: $("strokes"),
  cursors: $("cursors"),
  empty: $("empty"),
  palette: $("palette"),
  width: $("pen-width"),
  undo: $("undo-button"),
  clear: $("clear-button"),
  dialog: $("clear-dialog"),
  clearCancel: $("clear-cancel"),
  clearConfirm: $("clear-confirm"),
  presence: $("presence"),
  peopleTotal: $("people-total"),
  nameForm: $("name-form"),
  nameInput: $("name-input"),
};

// ---- the board model: the same rules in every page (and in tests/apps/board_model.py) -------

/** Who wrote a publication: the verified user, else the tab id the page declared, else the
 * connection. A key, not a display name: names may collide. */
function authorOf(info) {
  if (!info) return "server";
  if (info.user) return `u:${info.user}`;
  const tab = info.meta && typeof info.meta === "object" ? info.meta.tab : undefined;
  if (typeof tab === "string" && TAB_RE.test(tab)) return `t:${tab}`;
  return `c:${info.client}`;
}

/** The name to show for a ClientInfo. */
function nameOf(info) {
  const name = info && info.meta && typeof info.meta === "object" ? info.meta.name : undefined;
  if (typeof name === "string" && name.trim()) return name.trim().slice(0, MAX_NAME);
  if (info && info.user) return info.user;
  return info ? "anonymous" : "server";
}

function validPoints(points) {
  if (!Array.isArray(points) || points.length < 2 || points.length % 2 !== 0) return null;
  if (points.length > 2 * MAX_POINTS) return null;
  for (let i = 0; i < points.length; i += 1) {
    const v = points[i];
    const max = i % 2 === 0 ? BOARD_W : BOARD_H;
    if (!Number.isInteger(v) || v < 0 || v > max) return null;
  }
  return points;
}

function validStroke(offset, author, name, color, width, points) {
  const pts = validPoints(points);
  if (!pts || !Number.isInteger(offset) || offset < 1) return null;
  return {
    offset,
    author: String(author),
    name: String(name).slice(0, MAX_NAME),
    color: COLORS.includes(color) ? color : "ink",
    width: WIDTHS.includes(width) ? width : 4,
    points: pts,
  };
}

/** One entry of a snapshot's `strokes`. */
function entryOf(stroke) {
  return [stroke.offset, stroke.author, stroke.name, stroke.color, stroke.width, stroke.points];
}

function sizeOf(value) {
  return encoder.encode(JSON.stringify(value)).length;
}

/**
 * The board as the replay of a channel's publications, in offset order.
 *
 * `anchored` says whether the state is known to be complete: the replay started at offset 1,
 * at a clear, or at a snapshot whose base is covered by what was received. Until then the
 * publications are kept in `log`, to be applied again on top of the first usable snapshot.
 */
class Board {
  constructor() {
    this.strokes = new Map(); // offset -> stroke
    this.size = 0; // bytes of the strokes' snapshot entries, commas included
    this.last = 0; // offset of the last publication applied
    this.first = 0; // offset of the first publication received since the reset
    this.snapshot = null; // {offset, base} of the latest snapshot seen
    this.anchored = false;
    this.log = [];
  }

  /** Apply one publication {offset, data, info}; returns whether the strokes changed. */
  apply(pub) {
    if (pub.offset <= this.last) return false; // already applied
    if (!this.first) this.first = pub.offset;
    this.last = pub.offset;
    const op = pub.data && typeof pub.data === "object" ? pub.data : {};
    if (op.type === "snapshot") return this._snapshot(pub.offset, op);
    const entry = { offset: pub.offset, op, author: authorOf(pub.info), name: nameOf(pub.info) };
    if (!this.anchored) this.log.push(entry);
    const changed = this._op(entry);
    if (!this.anchored && (pub.offset === 1 || op.type === "clear")) this._anchor();
    return changed;
  }

  /** The snapshot publication of the current board: its data. */
  snapshotData() {
    return { type: "snapshot", base: this.last, strokes: [...this.strokes.values()].map(entryOf) };
  }

  _snapshot(offset, op) {
    const base = op.base;
    if (!Number.isInteger(base) || base < 0 || base >= offset || !Array.isArray(op.strokes)) {
      return false;
    }
    if (!this.snapshot || offset > this.snapshot.offset) this.snapshot = { offset, base };
    // Anchored: our replay already gives the same board. Otherwise start from this snapshot,
    // provided we have every publication after its base.
    if (this.anchored || base + 1 < this.first) return false;
    this.strokes.clear();
    this.size = 0;
    for (const item of op.strokes) {
      if (!Array.isArray(item)) continue;
      const stroke = validStroke(...item);
      if (stroke && stroke.offset <= base) this._add(stroke);
    }
    for (const entry of this.log) if (entry.offset > base) this._op(entry);
    this._anchor();
    return true;
  }

  _anchor() {
    this.anchored = true;
    this.log = [];
  }

  _op({ offset, op, author, name }) {
    if (op.type === "stroke") {
      const stroke = validStroke(offset, author, name, op.color, op.width, op.points);
      if (stroke) this._add(stroke);
      return Boolean(stroke);
    }
    if (op.type === "undo") {
      const stroke = this.strokes.get(op.target);
      if (!stroke || stroke.author !== author) return false; // only one's own strokes
      this._remove(stroke);
      return true;
    }
    if (op.type === "clear") {
      const changed = this.strokes.size > 0;
      for (const stroke of [...this.strokes.values()]) if (stroke.offset < offset) this._remove(stroke);
      return changed;
    }
    return false; // unknown operations are ignored (forward compatibility)
  }

  _add(stroke) {
    stroke.bytes = sizeOf(entryOf(stroke)) + 1;
    this.strokes.set(stroke.offset, stroke);
    this.size += stroke.bytes;
  }

  _remove(stroke) {
    this.strokes.delete(stroke.offset);
    this.size -= stroke.bytes;
  }
}

// ---- helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function loadString(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null; // storage disabled: the page works without it
  }
}

function saveString(storage, key, value) {
  try {
    storage.setItem(key, value);
  } catch {
    // private mode or full storage
  }
}

function randomHex(bytes) {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A stable, pleasant colour per author key. */
function hueOf(key) {
  let hash = 0;
  for (const ch of key) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "?";
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : Array.from(parts[0]).slice(0, 2).join("");
  return letters.toUpperCase();
}

function pathData(points) {
  let d = `M${points[0]} ${points[1]}`;
  if (points.length === 2) return `${d}l0.01 0`; // a dot: round caps draw it
  for (let i = 2; i < points.length; i += 2) d += `L${points[i]} ${points[i + 1]}`;
  return d;
}

// ---- state ---------------------------------------------------------------------------------

const app = {
  name: "",
  tab: "",
  me: "", // our author key
  channel: "",
  client: null,
  board: new Board(),
  live: false, // the first subscribe (or the reload after a reset) is done
  color: "ink",
  shown: new Map(), // offset -> <path>
  pending: new Map(), // stroke id -> <path> of our strokes not yet back from the hub
  presence: new Map(), // client id -> ClientInfo
  cursors: new Map(), // client id -> {node, timer}
  previews: new Map(), // stroke id -> {node, points, client, timer}: others' strokes in progress
  drawing: null, // {pointerId, points, node}
  cursorTimer: null,
  cursorSent: 0,
  cursorNext: null,
  snapshotting: false,
  fallbackAt: 0,
  renderScheduled: false,
  view: null, // the shared ConnectionView: status pill and banner
  full: false, // a stroke or a snapshot did not fit in one publication
  fullAt: 0, // the board's size then
};

// ---- rendering -----------------------------------------------------------------------------

function scheduleRender() {
  if (app.renderScheduled) return;
  app.renderScheduled = true;
  requestAnimationFrame(render);
}

/** Make the SVG show the model's strokes, in offset order (paint order is offset order). */
function render() {
  app.renderScheduled = false;
  const strokes = app.board.strokes;
  for (const [offset, node] of app.shown) {
    if (!strokes.has(offset)) {
      node.remove();
      app.shown.delete(offset);
    }
  }
  const offsets = [...strokes.keys()].sort((a, b) => a - b);
  let previous = null;
  for (const offset of offsets) {
    let node = app.shown.get(offset);
    if (!node) {
      node = strokeNode(strokes.get(offset));
      app.shown.set(offset, node);
      ui.strokes.insertBefore(node, previous ? previous.nextSibling : ui.strokes.firstChild);
    }
    previous = node;
  }
  // Strokes went away (undo, clear): the board may have room again.
  if (app.full && app.board.size < app.fullAt) setFull(false);
  ui.empty.hidden = !app.live || strokes.size > 0 || app.pending.size > 0;
  ui.undo.disabled = lastOwnStroke() === null;
}

function strokeNode(stroke) {
  const node = svgEl("path", {
    d: pathData(stroke.points),
    class: `stroke c-${stroke.color}`,
    "stroke-width": stroke.width,
    "data-testid": "board-stroke",
    "data-offset": stroke.offset,
    "data-author": stroke.author,
    "data-author-name": stroke.name,
    "data-state": "delivered",
  });
  if (stroke.author === app.me) node.classList.add("own");
  return node;
}

// ---- connection ----------------------------------------------------------------------------

/** What the page does on a state change, besides the status pill and banner. */
function onState(state) {
  if (state === State.CONNECTED) {
    // With a token, the hub's user id is who we are (authorOf): on every page alike.
    const me = app.client.user ? `u:${app.client.user}` : `t:${app.tab}`;
    if (me !== app.me) {
      app.me = me;
      renderPresence();
      scheduleRender();
    }
  } else if (state === State.RECONNECTING) {
    clearCursors();
  }
}

/** Say something in the banner (kinds "error", "full" and "missing" are the board's own). */
function showBanner(kind, title, text) {
  app.view.say(kind, title, text);
}

function hideBanner(kind) {
  if (ui.banner.dataset.kind === kind) ui.banner.hidden = true;
}

function start() {
  const params = new URLSearchParams(location.search);
  const name = params.get("name") ?? DEFAULT_BOARD;
  ui.boardName.textContent = name;
  document.title = `${name} — wshub board`;
  if (!NAME_RE.test(name)) {
    ui.status.textContent = "offline";
    ui.status.dataset.state = State.OFFLINE;
    ui.banner.dataset.kind = "error";
    ui.banner.replaceChildren(
      el("strong", {}, "This board name cannot be used."),
      " Names are 1–200 letters, digits or _ - . = @ + , ! ~ — ",
      el("a", { href: "/board" }, "open the default board"),
      ".",
    );
    ui.banner.hidden = false;
    ui.canvas.setAttribute("aria-disabled", "true");
    return;
  }
  app.channel = `board:${name}`;
  app.tab = loadString(sessionStorage, TAB_KEY) || "";
  if (!TAB_RE.test(app.tab)) {
    app.tab = randomHex(16);
    saveString(sessionStorage, TAB_KEY, app.tab);
  }
  app.me = `t:${app.tab}`;
  app.fallbackAt = 2 * SNAPSHOT_EVERY + Math.floor(Math.random() * (SNAPSHOT_EVERY / 2));
  const client = new HubClient(wsUrl(), {
    token: params.get("token") || undefined,
    meta: { name: app.name, tab: app.tab },
  });
  app.client = client;
  app.view = new ConnectionView(
    { status: ui.status, banner: ui.banner, root: ui.app },
    {
      reconnecting: ["Connection lost — reconnecting…", "Your strokes are kept and sent when it is back."],
      offline: ["You are offline.", "The board reconnects when your network is back."],
      recovered: ["Reconnected.", "The board is up to date."],
    },
  );
  app.view.watch(client);
  client.addEventListener("state", (event) => onState(event.detail.state));
  client.addEventListener("error", (event) => {
    event.preventDefault();
    console.warn("wshub board:", event.detail.error);
  });
  client.connect();
  client
    .subscribe(app.channel, {
      recent: RECENT,
      onPublication,
      onReset,
      onSubscribe,
      onJoin: (info) => {
        app.presence.set(info.client, info);
        renderPresence();
      },
      onLeave: (info) => {
        app.presence.delete(info.client);
        removeCursor(info.client);
        renderPresence();
      },
      onEphemeral,
      onUnsubscribe: ({ message }) => showBanner("error", "You left the board:", `${message}.`),
    })
    .catch((error) => showBanner("error", "Could not open the board:", `${error.message}.`));
}

function onPublication(pub) {
  const data = pub.data;
  if (data && typeof data === "object" && typeof data.id === "string") {
    const node = app.pending.get(data.id);
    if (node) {
      node.remove();
      app.pending.delete(data.id);
    }
    removePreview(data.id); // another page's stroke in progress is done
  }
  const board = app.board;
  if (board.apply(pub)) scheduleRender();
  if (data && data.type === "snapshot" && pub.info && app.client.clientIds.has(pub.info.client)) {
    app.snapshotting = false; // ours is in
  }
  if (app.live) maybeSnapshot(authorOf(pub.info) === app.me);
}

/**
 * Continuity was lost: "unrecovered" (the history no longer reaches back to us: the `recent`
 * publications and an onSubscribe follow) or "epoch" (the channel restarted: its latest
 * publications follow). Either way the board is rebuilt from what comes next.
 */
function onReset({ reason }) {
  app.board = new Board();
  app.snapshotting = false;
  if (reason === "unrecovered") app.live = false;
  scheduleRender();
}

function onSubscribe() {
  const board = app.board;
  // Neither a snapshot, nor a clear, nor offset 1 in what the hub keeps: old strokes are lost.
  const missing = !board.anchored && board.last > 0;
  if (!board.anchored) {
    board.anchored = true;
    board.log = [];
  }
  if (missing) {
    showBanner("missing", "Part of this board is missing:", "its oldest strokes are no longer kept.");
  } else {
    hideBanner("missing");
  }
  app.live = true;
  scheduleRender();
  maybeSnapshot(false);
  app.client.presence(app.channel).then(
    (clients) => {
      app.presence = new Map(clients.map((info) => [info.client, info]));
      renderPresence();
    },
    () => {},
  );
}

// ---- snapshots -----------------------------------------------------------------------------

/**
 * Post a snapshot when the publications since the latest snapshot's base reach a quarter of the
 * history: at once if we wrote the one that crossed it, later (twice as far, with jitter) if
 * its author did not (it left, or it is a backend). Two pages may race: both snapshots are of
 * the same board, and readers take the later one.
 */
function maybeSnapshot(mine) {
  const board = app.board;
  if (!app.live || !board.anchored || app.snapshotting || app.client.state !== State.CONNECTED) return;
  const since = board.last - (board.snapshot ? board.snapshot.base : 0);
  if (since < SNAPSHOT_EVERY || (!mine && since < app.fallbackAt)) return;
  if (board.size + SIZE_MARGIN > MAX_PUBLICATION_SIZE) {
    setFull(true);
    return;
  }
  app.snapshotting = true;
  app.client.publish(app.channel, board.snapshotData()).catch((error) => {
    app.snapshotting = false;
    if (error.code === 114) setFull(true); // our size estimate was short: stop trying
    else console.warn("wshub board: snapshot not posted:", error);
  });
}

function setFull(full) {
  app.fullAt = app.board.size;
  if (full === app.full) return;
  app.full = full;
  if (full) {
    showBanner("full", "This board is full.", "Undo strokes or clear it to keep drawing.");
  } else {
    hideBanner("full");
  }
}

// ---- drawing ---------------------------------------------------------------------------------

function boardPoint(event) {
  const matrix = ui.canvas.getScreenCTM();
  if (!matrix) return null;
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
  return [
    Math.round(Math.min(BOARD_W, Math.max(0, point.x))),
    Math.round(Math.min(BOARD_H, Math.max(0, point.y))),
  ];
}

function pendingNode(points, width, color) {
  return svgEl("path", {
    d: pathData(points),
    class: `stroke own c-${color}`,
    "stroke-width": width,
    "data-testid": "board-stroke",
    "data-offset": "",
    "data-author": app.me,
    "data-author-name": app.name,
    "data-state": "sending",
  });
}

function startStroke(event) {
  if (!app.client || app.drawing) return;
  if (event.pointerType === "mouse" && event.button !== 0) return;
  const point = boardPoint(event);
  if (!point) return;
  event.preventDefault();
  ui.canvas.setPointerCapture(event.pointerId);
  const width = Number(ui.width.value);
  const node = pendingNode(point, width, app.color);
  ui.strokes.parentNode.insertBefore(node, ui.cursors);
  app.drawing = {
    pointerId: event.pointerId,
    id: newMessageId(), // also the publish's message_id, and the others' preview key
    points: [...point],
    sent: 0, // points[0:sent] went out in cursor publications (the others' live preview)
    node,
    width,
    color: app.color,
  };
}

function extendStroke(event) {
  const drawing = app.drawing;
  if (!drawing || event.pointerId !== drawing.pointerId) return;
  const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) {
    const point = boardPoint(e);
    if (!point) continue;
    const n = drawing.points.length;
    const dx = point[0] - drawing.points[n - 2];
    const dy = point[1] - drawing.points[n - 1];
    if (dx * dx + dy * dy < MIN_STEP * MIN_STEP) continue;
    drawing.points.push(...point);
    if (drawing.points.length >= 2 * MAX_POINTS) {
      // Long strokes go out in pieces; the next one starts where this one ends.
      finishStroke();
      const next = pendingNode(point, drawing.width, drawing.color);
      ui.strokes.parentNode.insertBefore(next, ui.cursors);
      app.drawing = { ...drawing, id: newMessageId(), points: [...point], sent: 0, node: next };
      return;
    }
  }
  drawing.node.setAttribute("d", pathData(drawing.points));
}

function finishStroke() {
  const drawing = app.drawing;
  if (!drawing) return;
  app.drawing = null;
  const { id, points, node, width, color } = drawing;
  const data = { type: "stroke", id, color, width, points };
  const bytes = sizeOf(data);
  if (app.board.size + bytes + SIZE_MARGIN > MAX_PUBLICATION_SIZE) {
    node.remove();
    setFull(true);
    return;
  }
  node.setAttribute("d", pathData(points));
  app.pending.set(id, node);
  app.client.publish(app.channel, data, { messageId: id }).catch((error) => {
    node.remove();
    app.pending.delete(id);
    const reasons = { 111: "you are drawing too fast", 114: "the stroke is too long" };
    showBanner("error", "Stroke not saved:", `${reasons[error.code] || error.message}.`);
    scheduleRender();
  });
  scheduleRender();
}

function cancelStroke(event) {
  if (app.drawing && event.pointerId === app.drawing.pointerId) finishStroke();
}

// ---- undo and clear --------------------------------------------------------------------------

function lastOwnStroke() {
  let last = null;
  for (const stroke of app.board.strokes.values()) {
    if (stroke.author === app.me && (last === null || stroke.offset > last.offset)) last = stroke;
  }
  return last;
}

function undo() {
  const stroke = lastOwnStroke();
  if (!stroke || !app.client) return;
  // The undo takes effect when it comes back in the channel, at the same place for everyone.
  app.client.publish(app.channel, { type: "undo", target: stroke.offset }).catch((error) => {
    showBanner("error", "Undo failed:", `${error.message}.`);
  });
}

function askClear() {
  if (!app.client) return;
  ui.dialog.showModal();
}

function clearBoard() {
  ui.dialog.close();
  app.client.publish(app.channel, { type: "clear" }).catch((error) => {
    showBanner("error", "Clear failed:", `${error.message}.`);
  });
  ui.canvas.focus();
}

// ---- cursors (ephemeral publications) --------------------------------------------------------

function moveCursor(event) {
  if (!app.client || app.client.state !== State.CONNECTED) return;
  const point = boardPoint(event);
  if (!point) return;
  app.cursorNext = point;
  if (app.cursorTimer !== null) return; // the trailing send picks up the latest point
  const wait = Math.max(0, app.cursorSent + CURSOR_INTERVAL - Date.now());
  app.cursorTimer = setTimeout(sendCursor, wait);
}

function sendCursor() {
  app.cursorTimer = null;
  const point = app.cursorNext;
  app.cursorNext = null;
  if (!app.client || app.client.state !== State.CONNECTED) return;
  app.cursorSent = Date.now();
  const data = point ? { type: "cursor", x: point[0], y: point[1] } : { type: "cursor", gone: true };
  const drawing = app.drawing;
  if (point && drawing && drawing.points.length > drawing.sent) {
    // The stroke so far, from the last point sent, so that the others see it grow.
    const from = Math.max(0, drawing.sent - 2);
    data.ink = {
      id: drawing.id,
      color: drawing.color,
      width: drawing.width,
      points: drawing.points.slice(from),
    };
    drawing.sent = drawing.points.length;
  }
  app.client.publish(app.channel, data, { ephemeral: true }).catch(() => {});
}

function leaveCanvas() {
  app.cursorNext = null;
  clearTimeout(app.cursorTimer);
  app.cursorTimer = setTimeout(sendCursor, Math.max(0, app.cursorSent + CURSOR_INTERVAL - Date.now()));
}

function onEphemeral(data, info) {
  if (!data || typeof data !== "object" || data.type !== "cursor" || !info) return;
  if (app.client.clientIds.has(info.client)) return;
  if (data.gone) {
    removeCursor(info.client);
    return;
  }
  if (data.ink) previewInk(data.ink, info);
  const { x, y } = data;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return;
  let cursor = app.cursors.get(info.client);
  if (!cursor) {
    const name = nameOf(info);
    const node = svgEl("g", {
      class: "cursor",
      "data-testid": "board-cursor",
      "data-author": authorOf(info),
      "data-author-name": name,
    });
    node.style.setProperty("--hue", String(hueOf(authorOf(info))));
    node.append(svgEl("path", { d: "M0 0L0 22L6 16L11 26L15 24L10 14L18 14Z", class: "arrow" }));
    const label = svgEl("text", { x: 20, y: 34, class: "label" });
    label.textContent = name;
    node.append(label);
    ui.cursors.append(node);
    cursor = { node, timer: null };
    app.cursors.set(info.client, cursor);
  }
  const cx = Math.min(BOARD_W, Math.max(0, x));
  const cy = Math.min(BOARD_H, Math.max(0, y));
  cursor.node.setAttribute("transform", `translate(${cx} ${cy}) scale(${cursorScale()})`);
  clearTimeout(cursor.timer);
  cursor.timer = setTimeout(() => removeCursor(info.client), CURSOR_SHOW_FOR);
}

/** Another page's stroke in progress: a faint path that grows until the stroke is published. */
function previewInk(ink, info) {
  const points = validPoints(ink.points);
  if (typeof ink.id !== "string" || ink.id.length > 64 || !points) return;
  let preview = app.previews.get(ink.id);
  if (!preview) {
    const color = COLORS.includes(ink.color) ? ink.color : "ink";
    const node = svgEl("path", {
      class: `stroke preview c-${color}`,
      "stroke-width": WIDTHS.includes(ink.width) ? ink.width : 4,
      "data-testid": "board-preview",
      "data-author": authorOf(info),
    });
    ui.strokes.parentNode.insertBefore(node, ui.cursors);
    preview = { node, points: [], client: info.client, timer: null };
    app.previews.set(ink.id, preview);
  }
  preview.points.push(...points);
  if (preview.points.length > 4 * MAX_POINTS) preview.points = preview.points.slice(-2 * MAX_POINTS);
  preview.node.setAttribute("d", pathData(preview.points));
  clearTimeout(preview.timer);
  preview.timer = setTimeout(() => removePreview(ink.id), CURSOR_SHOW_FOR);
}

function removePreview(id) {
  const preview = app.previews.get(id);
  if (!preview) return;
  clearTimeout(preview.timer);
  preview.node.remove();
  app.previews.delete(id);
}

/** Board units per screen pixel, so that a cursor keeps its size on a small screen. */
function cursorScale() {
  const { width, height } = ui.canvas.getBoundingClientRect();
  if (!width || !height) return 1;
  return Math.max(1, Math.min(4, Math.max(BOARD_W / width, BOARD_H / height)));
}

function removeCursor(client) {
  for (const [id, preview] of app.previews) if (preview.client === client) removePreview(id);
  const cursor = app.cursors.get(client);
  if (!cursor) return;
  clearTimeout(cursor.timer);
  cursor.node.remove();
  app.cursors.delete(client);
}

function clearCursors() {
  for (const client of [...app.cursors.keys()]) removeCursor(client);
  for (const id of [...app.previews.keys()]) removePreview(id);
}

// ---- presence --------------------------------------------------------------------------------

/** One entry per author (a tab, or a user), named; equal names get a short tag each. */
function renderPresence() {
  const people = new Map();
  for (const info of app.presence.values()) {
    const key = authorOf(info);
    if (!people.has(key)) people.set(key, { key, name: nameOf(info), mine: key === app.me });
  }
  const list = [...people.values()].sort((a, b) => b.mine - a.mine || a.name.localeCompare(b.name));
  const counts = new Map();
  for (const person of list) counts.set(person.name, (counts.get(person.name) || 0) + 1);
  ui.presence.replaceChildren(
    ...list.map((person) => {
      const avatar = el("span", { className: "avatar", "aria-hidden": "true" }, initials(person.name));
      avatar.style.setProperty("--hue", String(hueOf(person.key)));
      const tag = counts.get(person.name) > 1 ? el("span", { className: "tag" }, `#${person.key.slice(2, 6)}`) : null;
      return el(
        "li",
        { "data-author": person.key, "data-person": person.name },
        avatar,
        el("span", { className: "name" }, person.name),
        tag,
        person.mine ? el("span", { className: "you" }, "you") : null,
      );
    }),
  );
  ui.peopleTotal.textContent = `— ${list.length}`;
}

// ---- controls --------------------------------------------------------------------------------

function renderPalette() {
  ui.palette.replaceChildren(
    ...COLORS.map((color) => {
      const button = el("button", {
        type: "button",
        className: `swatch c-${color}`,
        "aria-label": `Colour ${color}`,
        "aria-pressed": String(color === app.color),
        "data-color": color,
        title: color,
      });
      button.addEventListener("click", () => {
        app.color = color;
        renderPalette();
        ui.palette.querySelector(`[data-color="${color}"]`).focus();
      });
      return button;
    }),
  );
}

function bind() {
  ui.canvas.addEventListener("pointerdown", startStroke);
  ui.canvas.addEventListener("pointermove", (event) => {
    extendStroke(event);
    moveCursor(event);
  });
  ui.canvas.addEventListener("pointerup", cancelStroke);
  ui.canvas.addEventListener("pointercancel", cancelStroke);
  ui.canvas.addEventListener("pointerleave", leaveCanvas);
  ui.undo.addEventListener("click", undo);
  ui.clear.addEventListener("click", askClear);
  ui.clearCancel.addEventListener("click", () => ui.dialog.close());
  ui.clearConfirm.addEventListener("click", clearBoard);
  ui.nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.nameInput.value.trim().replace(/\s+/g, " ").slice(0, MAX_NAME);
    if (!name || name === app.name) return;
    saveString(localStorage, NAME_KEY, name);
    location.reload(); // the name travels in the connection's meta: connect again
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (ui.dialog.open || (target instanceof HTMLElement && target.closest("input, select, textarea"))) {
      return;
    }
    const key = event.key.toLowerCase();
    if ((key === "u" && !event.ctrlKey && !event.metaKey && !event.altKey) ||
        (key === "z" && (event.ctrlKey || event.metaKey) && !event.shiftKey)) {
      event.preventDefault();
      undo();
    }
  });
}

function loadName() {
  let name = loadString(localStorage, NAME_KEY);
  if (!name) {
    try {
      const nick = JSON.parse(loadString(localStorage, CHAT_NICK_KEY));
      if (typeof nick === "string") name = nick;
    } catch {
      // no chat nickname either
    }
  }
  name = (name || "").trim().slice(0, MAX_NAME);
  return name || `Guest ${Math.floor(100 + Math.random() * 900)}`;
}

app.name = loadName();
ui.nameInput.value = app.name;
renderPalette();
bind();
start();
