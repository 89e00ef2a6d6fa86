// wshub chat — the demo chat room page, built on the hub's browser client (wshub.js).
//
// Each room is the hub channel `chat:<room>`. The page keeps one HubClient (one WebSocket)
// and one Subscription per joined room. The nickname travels in the connection's `meta`
// (anonymous mode, protocol §3 ClientInfo), so every publication, presence entry and
// join/leave carries it; message data is just {text, id}, where `id` is also the publish's
// `message_id` and lets the page match its own messages when they come back.

import { disconnectAdvice, HubClient, newMessageId, State } from "wshub";
import { ConnectionView, wsUrl } from "wshub-ui";

const NICK_KEY = "wshub-chat:nick";
const IDS_KEY = "wshub-chat:client-ids"; // sessionStorage: this tab's past client ids
const MAX_IDS = 50;
const ROOMS_KEY = "wshub-chat:rooms";
const DEFAULT_ROOM = "lobby";
const RECENT = 50; // messages loaded when entering a room
const MAX_NICK = 32;
const MAX_ROOM = 64; // characters of a room name
const MAX_CHANNEL = 200; // characters of a channel name's part after "chat:" (the hub's limit)
const TYPING_SEND_INTERVAL = 2500; // ms between our "typing" signals, and after a message
const RATE_LIMITED = 111; // the hub's error code for a command over its rate limit
const RATE_LIMIT_DELAY = 1000; // ms before the first retry of a rate-limited message
const RATE_LIMIT_RETRIES = 4; // automatic retries (1 s, 2 s, 4 s, 8 s) before "Not sent"
const TYPING_SHOW_FOR = 4000; // ms a "typing" signal from someone else stays visible
const GROUP_WINDOW = 5 * 60 * 1000; // consecutive messages of one author within this are grouped
const MAX_ACTIVITY = 30;

const $ = (id) => document.getElementById(id);

const ui = {
  joinScreen: $("join-screen"),
  joinForm: $("join-form"),
  nickname: $("nickname"),
  joinRoomName: $("join-room-name"),
  joinError: $("join-error"),
  chatScreen: $("chat-screen"),
  app: $("chat-screen"),
  roomList: $("room-list"),
  roomForm: $("room-form"),
  roomInput: $("room-input"),
  roomError: $("room-error"),
  meAvatar: $("me-avatar"),
  meName: $("me-name"),
  changeName: $("change-name"),
  roomName: $("room-name"),
  status: $("connection-status"),
  banner: $("banner"),
  scroller: $("scroller"),
  lists: $("lists"),
  empty: $("empty-room"),
  jump: $("jump"),
  typing: $("typing"),
  composer: $("composer"),
  input: $("message-input"),
  send: $("send-button"),
  presence: $("presence-list"),
  peopleTotal: $("people-total"),
  peopleCount: $("people-count"),
  activity: $("activity-list"),
  toggleRooms: $("toggle-rooms"),
  togglePeople: $("toggle-people"),
  scrim: $("scrim"),
};

// ---- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(path) {
  const ns = "http://www.w3.org/2000/svg";
  const node = document.createElementNS(ns, "svg");
  node.setAttribute("viewBox", "0 0 20 20");
  node.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", path);
  node.append(p);
  return node;
}

const ICON_CLOCK = "M10 4.5a5.5 5.5 0 1 0 0 11a5.5 5.5 0 1 0 0-11M10 7v3.2l2 1.3";
const ICON_CHECK = "M4.5 10.5l3.5 3.5 7.5-8";
const ICON_ALERT = "M10 5v6M10 14.5v.5";
const ICON_CLOSE = "M5 5l10 10M15 5L5 15";

function loadJSON(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function saveJSON(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // private mode or full storage: the page works without it
  }
}

function loadSession(key) {
  try {
    const value = JSON.parse(sessionStorage.getItem(key));
    return Array.isArray(value) ? value : [];
  } catch {
    return [];
  }
}

function saveSession(key, value) {
  try {
    sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    // private mode or full storage: only the recognition of our own old messages is lost
  }
}

/**
 * A room name as typed, made canonical: lower case, Unicode letters and digits kept (NFC),
 * spaces turned into "-", other characters dropped except "-", "_" and ".".
 */
function normalizeRoom(raw) {
  let name = Array.from(
    raw
      .normalize("NFC")
      .trim()
      .toLowerCase()
      .replace(/^#+/, "")
      .replace(/\s+/g, "-")
      .replace(/[^\p{L}\p{M}\p{N}_.-]/gu, ""),
  )
    .slice(0, MAX_ROOM)
    .join("");
  while (encodeRoom(name).length > MAX_CHANNEL) name = Array.from(name).slice(0, -1).join("");
  return name;
}

/**
 * The hub channel of a room. Channel names are ASCII (docs/protocol.md §3), so every
 * character outside [a-z0-9_.-] is written as "~<hex code point>,": "ünïcøde" is
 * "chat:~fc,n~ef,c~f8,de". Reversible (each escape is one code point; "~" and "," never
 * occur in a room name), and an ASCII room keeps its plain channel ("chat:design-team").
 */
function roomChannel(name) {
  return `chat:${encodeRoom(name)}`;
}

function encodeRoom(name) {
  let encoded = "";
  for (const ch of name) {
    encoded += /[a-z0-9_.-]/.test(ch) ? ch : `~${ch.codePointAt(0).toString(16)},`;
  }
  return encoded;
}

/** The room named in the address (`/#design`), or "". */
function roomFromHash() {
  try {
    return normalizeRoom(decodeURIComponent(location.hash.slice(1)));
  } catch {
    return ""; // a malformed %-escape
  }
}

/** The address fragment of a room: percent-encoded, as the browser shows it. */
function roomHash(name) {
  return `#${encodeURIComponent(name)}`;
}

function initials(name) {
  // "Sam (2)", the second Sam on the page (labelFor), is "S2".
  const numbered = /^(.*\S) \((\d+)\)$/.exec(name);
  if (numbered) return Array.from(initials(numbered[1]))[0] + numbered[2];
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "?";
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : Array.from(parts[0]).slice(0, 2).join("");
  return letters.toUpperCase();
}

/** A stable, pleasant colour per name. */
function colorFor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 48%)`;
}

function avatar(name) {
  const node = el("span", { className: "avatar", "aria-hidden": "true" }, initials(name));
  node.style.setProperty("--avatar", colorFor(name));
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function timeElement(ms) {
  const date = new Date(ms);
  return el("time", { datetime: date.toISOString(), title: fullFormat.format(date) }, timeFormat.format(date));
}

/** The name a ClientInfo declares (protocol §3); not unique: see labelFor(). */
function displayName(info) {
  if (!info) return "Server"; // published through the HTTP API without an info
  const nick = info && info.meta && typeof info.meta.nick === "string" ? info.meta.nick.trim() : "";
  if (nick) return nick.slice(0, MAX_NICK);
  if (info && info.user) return info.user;
  return "anonymous";
}

const ME = "me";

/**
 * Who a ClientInfo is. Identity comes from the ids the hub gives, never from the display
 * name: an authenticated user is one person on all their connections; an anonymous
 * connection is one person; every connection this tab has had is "me".
 */
function personKey(info) {
  if (!info) return "server";
  if (info.user) return app.client && info.user === app.client.user ? ME : `u:${info.user}`;
  return isMine(info) ? ME : `c:${info.client}`;
}

/** Whether `key` is in a room's presence (any room) or is "me". */
function isPresent(key) {
  if (key === ME) return true;
  for (const room of app.rooms.values()) {
    for (const info of room.presence.values()) if (personKey(info) === key) return true;
  }
  return false;
}

/**
 * The name shown for a person: their display name, made distinct from the other people
 * on the page ("Sam", "Sam (2)"). A label is given on first sight and kept; a number freed
 * by someone who left is given again (an anonymous reconnect gets a new client id).
 */
function labelFor(info) {
  const key = personKey(info);
  if (key === ME) return app.nick;
  const known = app.labels.get(key);
  if (known) return known;
  const name = displayName(info);
  const held = new Set([app.nick]);
  for (const [other, label] of app.labels) if (isPresent(other)) held.add(label);
  let label = name;
  for (let n = 2; held.has(label); n += 1) label = `${name} (${n})`;
  app.labels.set(key, label);
  return label;
}


// ---- state ---------------------------------------------------------------------------------

/** One joined room: its subscription and what the page shows for it. */
class Room {
  constructor(name) {
    this.name = name;
    this.channel = roomChannel(name);
    this.sub = null;
    this.list = el("ol", { className: "messages", role: "log", "aria-label": `Messages in #${name}` });
    this.byOffset = new Map(); // offset -> <li>
    this.byId = new Map(); // message id of our own messages -> <li>
    this.presence = new Map(); // client id -> ClientInfo
    this.typing = new Map(); // client id -> {name, timer}
    this.unread = 0;
    this.ready = false; // first subscribe done: history is shown
  }
}

const app = {
  nick: "",
  client: null,
  rooms: new Map(), // name -> Room
  current: null, // Room
  closeCode: null, // of the last WebSocket closure: tells a refusal from a network problem
  recovery: null, // {pending, missed, lost} while rooms recover after a reconnect
  labels: new Map(), // person key -> the distinct name shown for them
  ownIds: new Set(loadSession(IDS_KEY)), // this tab's client ids before the last reload
  outbox: [], // messages waiting to be published, in the order they were written
  sending: null, // the outbox entry being published
  paused: false, // waiting after a rate-limit refusal before publishing again
  lastTypingSent: 0,
  typingSentTo: null, // the room we last told "typing: true"
};

// ---- connection --------------------------------------------------------------------------

function startClient() {
  const params = new URLSearchParams(location.search);
  const client = new HubClient(wsUrl(), {
    token: params.get("token") || undefined,
    meta: { nick: app.nick },
  });
  app.client = client;
  client.addEventListener("state", (event) => showState(event.detail.state, event.detail.previous));
  client.addEventListener("recovered", (event) => recovered(event.detail));
  // The close code tells a refusal (no or bad token, too many connections) from a network
  // problem; HubClient stops retrying after a refusal and goes "offline".
  client.addEventListener("disconnected", (event) => (app.closeCode = event.detail.code));
  client.addEventListener("error", (event) => {
    event.preventDefault();
    console.warn("wshub chat:", event.detail.error);
  });
  showState(State.CONNECTING);
  client.connect();
  for (const room of app.rooms.values()) subscribe(room);
}

// The status pill and the banner are every page's (ui.js); the chat adds what it knows
// beyond the connection state: a refusal for good, and how the catching up went.
const connectionView = new ConnectionView(
  { status: ui.status, banner: ui.banner, root: ui.app },
  {
    reconnecting: [
      "Connection lost — reconnecting…",
      " Messages you send now will go out as soon as it is back.",
    ],
    offline: ["You are offline.", " The chat reconnects when your network is back."],
    recovered: ["Reconnected — catching up…", ""],
  },
);

function showState(state, previous) {
  if (state === State.CONNECTED) {
    app.closeCode = null;
    rememberClientId(app.client.clientId);
  }
  if (state === State.OFFLINE && refused(app.closeCode)) {
    showRefusal(REFUSALS[app.closeCode] || NOT_UNDERSTOOD);
    return;
  }
  const back =
    state === State.CONNECTED && (connectionView.reconnecting || previous === State.OFFLINE);
  connectionView.show(state, previous);
  if (state === State.RECONNECTING) {
    app.recovery = null;
    for (const room of app.rooms.values()) clearTyping(room);
  } else if (back) {
    const subscribed = [...app.rooms.values()].filter((room) => room.ready).length;
    app.recovery = { pending: subscribed, missed: 0, lost: false };
    // "catching up" stays until every room has recovered (not the view's few seconds)
    connectionView.say("reconnecting", "Reconnected — catching up…", "");
    if (subscribed === 0) recoveryDone();
  }
}

/**
 * Whether a close code is a refusal that HubClient does not retry (protocol §7, the
 * DISCONNECT_CODES table of wshub.js): no reconnect, or a new token needed (the page has no
 * getToken). Anything else that ends "offline" is the network.
 */
function refused(code) {
  if (code === null) return false;
  const advice = disconnectAdvice(code);
  return !advice.reconnect || advice.newToken;
}

/**
 * What the page says when the hub refused the connection for good: not a network problem,
 * so no "reconnecting" and no "offline" banner.
 */
const NOT_UNDERSTOOD = {
  status: "refused",
  title: "The hub closed the connection.",
  detail: () => " This page and the hub do not understand each other; reload the page.",
};
const REFUSALS = {
  4001: {
    status: "not signed in",
    title: "This hub needs a sign-in token.",
    detail: (hasToken) =>
      hasToken
        ? " The token in the address was refused (wrong or expired): open the page with a new one."
        : " It does not accept guests: open the page as /?token=<your token>.",
  },
  4003: {
    status: "not signed in",
    title: "Your sign-in token expired.",
    detail: () => " Open the page with a new token.",
  },
  4006: {
    status: "refused",
    title: "Too many connections.",
    detail: () => " Close the chat in another tab or window, then reload this page.",
  },
};

function showRefusal(refusal) {
  const hasToken = new URLSearchParams(location.search).has("token");
  ui.status.textContent = refusal.status;
  ui.status.dataset.state = "refused";
  ui.app.dataset.connection = "offline";
  connectionView.reconnecting = false;
  connectionView.say("refused", refusal.title, refusal.detail(hasToken));
}

/** A room was subscribed again after a reconnect (HubClient "recovered" event). */
function recovered({ recovered: ok, missed }) {
  const recovery = app.recovery;
  if (!recovery) return;
  recovery.pending -= 1;
  if (ok) recovery.missed += missed;
  else recovery.lost = true;
  if (recovery.pending <= 0) recoveryDone();
}

function recoveryDone() {
  const { missed, lost } = app.recovery;
  app.recovery = null;
  let detail;
  if (lost) detail = " Some messages could not be recovered; showing the latest history.";
  else if (missed === 0) detail = " Nothing was missed.";
  else detail = ` Caught up on ${missed} missed message${missed === 1 ? "" : "s"}.`;
  connectionView.say("recovered", "Recovered.", detail, 5000);
}

// ---- rooms -------------------------------------------------------------------------------

function saveRooms() {
  saveJSON(ROOMS_KEY, [...app.rooms.keys()]);
}

function joinRoom(name, { select = true } = {}) {
  let room = app.rooms.get(name);
  if (!room) {
    room = new Room(name);
    app.rooms.set(name, room);
    ui.lists.append(room.list);
    room.list.hidden = true;
    saveRooms();
    renderRoomList();
    if (app.client) subscribe(room);
  }
  if (select) selectRoom(room);
  return room;
}

function leaveRoom(room) {
  if (app.client) app.client.unsubscribe(room.channel).catch(() => {});
  for (const entry of room.typing.values()) clearTimeout(entry.timer);
  app.rooms.delete(room.name);
  room.list.remove();
  saveRooms();
  if (app.current === room) {
    app.current = null;
    const next = app.rooms.values().next().value;
    if (next) selectRoom(next);
    else if (room.name !== DEFAULT_ROOM) joinRoom(DEFAULT_ROOM);
    else showNoRoom();
  }
  renderRoomList();
}

/** Nothing joined (the last room was left or refused): invite to join one. */
function showNoRoom() {
  ui.roomName.textContent = "";
  document.title = "wshub chat";
  ui.empty.hidden = true;
  renderPresence();
  renderTyping();
  ui.roomInput.focus();
}

function selectRoom(room) {
  if (app.current && app.current !== room) {
    stopTyping();
    app.current.list.hidden = true;
    app.current.list.removeAttribute("data-testid");
  }
  app.current = room;
  room.unread = 0;
  room.list.hidden = false;
  room.list.dataset.testid = "message-list";
  ui.roomName.textContent = room.name;
  document.title = `#${room.name} · wshub chat`;
  if (location.hash !== roomHash(room.name)) history.replaceState(null, "", roomHash(room.name));
  renderRoomList();
  renderPresence();
  renderTyping();
  renderEmpty();
  scrollToBottom();
  closeDrawers();
}

function renderRoomList() {
  const items = [];
  for (const room of app.rooms.values()) {
    const current = room === app.current;
    const button = el(
      "button",
      {
        type: "button",
        className: room.unread ? "room unread" : "room",
        "aria-current": current ? "page" : null,
        "data-room": room.name,
      },
      el("span", { className: "hash", "aria-hidden": "true" }, "#"),
      el("bdi", { className: "name" }, room.name),
      room.unread && !current
        ? el("span", { className: "badge", "aria-label": `${room.unread} unread` }, String(room.unread))
        : null,
    );
    button.addEventListener("click", () => {
      selectRoom(room);
      ui.input.focus();
    });
    const leave = el("button", {
      type: "button",
      className: "room-leave",
      "aria-label": `Leave #${room.name}`,
      title: "Leave room",
    });
    leave.append(svg(ICON_CLOSE));
    leave.addEventListener("click", () => leaveRoom(room));
    items.push(el("li", {}, button, leave));
  }
  ui.roomList.replaceChildren(...items);
}

function subscribe(room) {
  room.sub = null;
  app.client
    .subscribe(room.channel, {
      recent: RECENT,
      onPublication: (pub) => onPublication(room, pub),
      onReset: () => resetRoom(room),
      onSubscribe: () => onSubscribed(room),
      onJoin: (info) => onJoin(room, info),
      onLeave: (info) => onLeave(room, info),
      onEphemeral: (data, info) => onEphemeral(room, data, info),
      onUnsubscribe: () => {
        if (app.rooms.get(room.name) === room) leaveRoom(room);
      },
    })
    .then(
      (sub) => {
        room.sub = sub;
      },
      (error) => {
        if (app.rooms.get(room.name) !== room) return;
        ui.roomError.textContent = `Could not join #${room.name}: ${error.message}.`;
        leaveRoom(room);
      },
    );
}

// ---- messages ----------------------------------------------------------------------------

function onSubscribed(room) {
  room.ready = true;
  renderEmpty();
  if (room === app.current) scrollToBottom();
  // A fresh snapshot of who is here; join/leave pushes keep it current from now on.
  app.client.presence(room.channel).then(
    (clients) => {
      room.presence = new Map(clients.map((info) => [info.client, info]));
      if (room === app.current) renderPresence();
    },
    () => {},
  );
}

/** Whether a ClientInfo is one of this tab's connections, now or before a reload. */
function isMine(info) {
  if (!info || !info.client) return false;
  return app.ownIds.has(info.client) || Boolean(app.client && app.client.clientIds.has(info.client));
}

/** Remember this tab's client ids across reloads (sessionStorage: per tab, like the page). */
function rememberClientId(id) {
  app.ownIds.delete(id);
  app.ownIds.add(id);
  saveSession(IDS_KEY, [...app.ownIds].slice(-MAX_IDS));
}

function onPublication(room, pub) {
  const data = pub.data && typeof pub.data === "object" ? pub.data : { text: String(pub.data) };
  if (pub.info) stopShowingTyping(room, pub.info.client);
  const mine = personKey(pub.info) === ME;
  // Our own message coming back: it is already on the page. Only this tab's connections can
  // confirm it: another client cannot mark our message delivered by reusing its id.
  const own = isMine(pub.info) && typeof data.id === "string" ? room.byId.get(data.id) : undefined;
  if (own) {
    delivered(room, own, pub.offset, pub.time);
    return;
  }
  if (room.byOffset.has(pub.offset)) return;
  const li = messageElement({
    name: labelFor(pub.info),
    text: typeof data.text === "string" ? data.text : JSON.stringify(data),
    time: pub.time,
    offset: pub.offset,
    state: "delivered",
    mine,
  });
  room.byOffset.set(pub.offset, li);
  placeMessage(room, li);
  if (room !== app.current) {
    if (room.ready) {
      room.unread += 1;
      renderRoomList();
    }
  }
}

function messageElement({ name, text, time, offset, state, mine }) {
  const tick = el("span", { className: "tick" });
  const li = el(
    "li",
    {
      className: mine ? "msg own" : "msg",
      "data-offset": offset ?? "",
      "data-state": state,
      "data-author": name,
      "data-time": time,
    },
    avatar(name),
    // User text is isolated (<bdi>, dir=auto): a U+202E in it cannot reorder what follows.
    el("div", { className: "meta" }, el("bdi", { className: "author" }, name), timeElement(time)),
    el("p", { className: "text", dir: "auto" }, text),
    tick,
  );
  setTick(li, state);
  return li;
}

function setTick(li, state) {
  li.dataset.state = state;
  const tick = li.querySelector(".tick");
  if (!li.classList.contains("own")) {
    tick.replaceChildren();
    return;
  }
  const icons = { sending: ICON_CLOCK, delivered: ICON_CHECK, failed: ICON_ALERT };
  const labels = { sending: "Sending", delivered: "Delivered", failed: "Not sent" };
  tick.replaceChildren(svg(icons[state]));
  tick.setAttribute("title", labels[state]);
  tick.setAttribute("aria-label", labels[state]);
  tick.setAttribute("role", "img");
}

/**
 * Put a message in offset order. Messages still being sent have no offset and stay last;
 * the rest are sorted by offset (history, live pushes and our own acknowledged ones).
 */
function placeMessage(room, li) {
  const list = room.list;
  const stick = room === app.current && nearBottom();
  const offset = Number(li.dataset.offset) || Infinity;
  let before = null;
  if (offset !== Infinity) {
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      const other = Number(node.dataset.offset) || Infinity;
      if (node !== li && other < offset) break;
      if (node !== li) before = node;
    }
  }
  if (li.parentNode !== list || li.nextElementSibling !== before) list.insertBefore(li, before);
  group(li);
  if (li.nextElementSibling) group(li.nextElementSibling);
  renderEmpty();
  if (room === app.current) {
    if (stick || li.classList.contains("own")) scrollToBottom();
    else ui.jump.hidden = false;
  }
}

/** Hide the avatar and name of a message that follows one of the same author closely. */
function group(li) {
  const prev = li.previousElementSibling;
  const continued =
    prev &&
    prev.dataset.author === li.dataset.author &&
    Math.abs(Number(li.dataset.time) - Number(prev.dataset.time)) < GROUP_WINDOW;
  li.classList.toggle("continued", Boolean(continued));
}

function sendMessage() {
  const room = app.current;
  const text = ui.input.value.trim();
  if (!room || !text) return;
  ui.input.value = "";
  autosize();
  updateSendButton();
  // The message itself ends the "typing" shown to the others (onPublication): no
  // `typing: false` for it, and no new typing signal for a while (typed()).
  app.typingSentTo = null;
  app.lastTypingSent = Date.now();
  const id = newMessageId();
  const li = messageElement({ name: app.nick, text, time: Date.now(), state: "sending", mine: true });
  room.byId.set(id, li);
  placeMessage(room, li);
  publish(room, li, id, text);
}

/**
 * Queue a message for publishing. Messages go out one at a time, in the order they were
 * written: a message refused by the hub's rate limit (error 111) is sent again after a
 * pause, and the ones behind it wait, so that they keep their order in the room.
 */
function publish(room, li, id, text) {
  setTick(li, "sending");
  li.querySelector(".failed-note")?.remove();
  app.outbox.push({ client: app.client, room, li, id, text, refusals: 0 });
  pump();
}

function pump() {
  if (app.sending || app.paused) return;
  const entry = app.outbox.shift();
  if (!entry) return;
  const { client, room, li, id, text } = entry;
  if (client !== app.client || app.rooms.get(room.name) !== room) {
    pump(); // signed out, or the room was left meanwhile
    return;
  }
  app.sending = entry;
  client.publish(room.channel, { text, id }, { messageId: id }).then(
    (offset) => {
      if (app.sending !== entry) return; // signed out meanwhile
      app.sending = null;
      delivered(room, li, offset);
      pump();
    },
    (error) => {
      if (app.sending !== entry) return;
      app.sending = null;
      if (error.code === RATE_LIMITED && entry.refusals < RATE_LIMIT_RETRIES) {
        // The refusal carries no delay: back off 1 s, 2 s, 4 s, 8 s, then ask the user.
        const delay = RATE_LIMIT_DELAY * 2 ** entry.refusals;
        entry.refusals += 1;
        app.outbox.unshift(entry);
        app.paused = true;
        setTimeout(() => {
          app.paused = false;
          pump();
        }, delay);
        return;
      }
      failed(room, li, id, text, error);
      pump();
    },
  );
}

function delivered(room, li, offset, time) {
  if (li.dataset.state === "delivered") return;
  li.dataset.offset = offset;
  if (time) li.dataset.time = time;
  room.byOffset.set(offset, li);
  setTick(li, "delivered");
  placeMessage(room, li);
}

function failed(room, li, id, text, error) {
  if (li.dataset.state === "delivered") return;
  setTick(li, "failed");
  const reasons = { [RATE_LIMITED]: "you are sending too fast", 114: "the message is too long" };
  const retry = el("button", { type: "button" }, "Retry");
  retry.addEventListener("click", () => publish(room, li, id, text));
  li.append(el("p", { className: "failed-note" }, `Not sent: ${reasons[error.code] || error.message}.`, retry));
}

/** Continuity was lost: forget the room's delivered messages; fresh history follows. */
function resetRoom(room) {
  for (const li of room.byOffset.values()) {
    if (!li.classList.contains("own") || li.dataset.state === "delivered") li.remove();
  }
  room.byOffset.clear();
  for (const [id, li] of room.byId) if (!li.isConnected) room.byId.delete(id);
}

function renderEmpty() {
  const room = app.current;
  ui.empty.hidden = !room || !room.ready || room.list.childElementCount > 0;
}

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jump.hidden = true;
}

// ---- presence and activity ----------------------------------------------------------------

function people(room) {
  const byKey = new Map();
  for (const info of room.presence.values()) {
    const key = personKey(info);
    byKey.set(key, byKey.get(key) || { key, name: labelFor(info), mine: key === ME });
  }
  return [...byKey.values()].sort((a, b) => (b.mine - a.mine) || a.name.localeCompare(b.name));
}

function renderPresence() {
  const room = app.current;
  const list = room ? people(room) : [];
  ui.presence.replaceChildren(
    ...list.map((person) =>
      el(
        "li",
        { "data-person": person.name },
        avatar(person.name),
        el("bdi", { className: "name" }, person.name),
        person.mine ? el("span", { className: "you" }, "you") : null,
      ),
    ),
  );
  ui.peopleTotal.textContent = `— ${list.length}`;
  ui.peopleCount.textContent = String(list.length);
  ui.togglePeople.setAttribute("aria-label", `Show who is online (${list.length})`);
}

function hasPerson(room, key) {
  for (const info of room.presence.values()) if (personKey(info) === key) return true;
  return false;
}

// A presence_diff push calls onJoin/onLeave once per client (a reconnect storm: hundreds in
// one diff): the list is drawn once after all of them, not once per client.
let presenceRenderQueued = false;

function renderPresenceSoon(room) {
  if (room !== app.current || presenceRenderQueued) return;
  presenceRenderQueued = true;
  queueMicrotask(() => {
    presenceRenderQueued = false;
    renderPresence();
  });
}

function onJoin(room, info) {
  const isNew = !hasPerson(room, personKey(info));
  room.presence.set(info.client, info);
  if (isNew && personKey(info) !== ME && room.ready) activity(room, labelFor(info), "joined");
  renderPresenceSoon(room);
}

function onLeave(room, info) {
  room.presence.delete(info.client);
  stopShowingTyping(room, info.client);
  if (!hasPerson(room, personKey(info)) && personKey(info) !== ME) activity(room, labelFor(info), "left");
  renderPresenceSoon(room);
}

function activity(room, name, what) {
  const item = el(
    "li",
    {},
    el("span", {}, el("bdi", { className: "who" }, name), ` ${what} #`, el("bdi", {}, room.name)),
    timeElement(Date.now()),
  );
  ui.activity.prepend(item);
  while (ui.activity.childElementCount > MAX_ACTIVITY) ui.activity.lastElementChild.remove();
}

// ---- typing indicator (ephemeral publications, never stored) --------------------------------

function onEphemeral(room, data, info) {
  if (!data || typeof data !== "object" || !info || personKey(info) === ME) return;
  if (data.typing) {
    const entry = room.typing.get(info.client);
    if (entry) clearTimeout(entry.timer);
    room.typing.set(info.client, {
      name: labelFor(info),
      timer: setTimeout(() => stopShowingTyping(room, info.client), TYPING_SHOW_FOR),
    });
  } else {
    stopShowingTyping(room, info.client);
    return;
  }
  if (room === app.current) renderTyping();
}

function stopShowingTyping(room, client) {
  const entry = room.typing.get(client);
  if (!entry) return;
  clearTimeout(entry.timer);
  room.typing.delete(client);
  if (room === app.current) renderTyping();
}

function clearTyping(room) {
  for (const client of [...room.typing.keys()]) stopShowingTyping(room, client);
}

function renderTyping() {
  const room = app.current;
  const names = room ? [...new Set([...room.typing.values()].map((t) => t.name))] : [];
  const who = names.map((name) => el("bdi", {}, name));
  if (names.length === 1) ui.typing.replaceChildren(who[0], " is typing…");
  else if (names.length === 2) ui.typing.replaceChildren(who[0], " and ", who[1], " are typing…");
  else if (names.length > 2) ui.typing.replaceChildren("Several people are typing…");
  else ui.typing.replaceChildren();
}

function typed() {
  const room = app.current;
  if (!room || !app.client || app.client.state !== State.CONNECTED) return;
  if (!ui.input.value.trim()) {
    stopTyping();
    return;
  }
  // Typing signals spend the same publish budget as messages: never while messages wait.
  if (app.sending || app.outbox.length > 0) return;
  const now = Date.now();
  if (now - app.lastTypingSent < TYPING_SEND_INTERVAL) return;
  app.lastTypingSent = now;
  app.typingSentTo = room;
  app.client.publish(room.channel, { typing: true }, { ephemeral: true }).catch(() => {});
}

function stopTyping() {
  const room = app.typingSentTo;
  if (!room) return;
  app.typingSentTo = null;
  app.lastTypingSent = 0;
  if (app.client && app.client.state === State.CONNECTED && app.rooms.get(room.name) === room) {
    app.client.publish(room.channel, { typing: false }, { ephemeral: true }).catch(() => {});
  }
}

// ---- composer, drawers, keyboard ------------------------------------------------------------

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 180)}px`;
}

function updateSendButton() {
  ui.send.disabled = ui.input.value.trim() === "";
}

function closeDrawers() {
  ui.app.classList.remove("rooms-open", "people-open");
  ui.toggleRooms.setAttribute("aria-expanded", "false");
  ui.togglePeople.setAttribute("aria-expanded", "false");
}

function toggleDrawer(name, button) {
  const open = !ui.app.classList.contains(`${name}-open`);
  closeDrawers();
  ui.app.classList.toggle(`${name}-open`, open);
  button.setAttribute("aria-expanded", String(open));
  // Move the focus into the drawer (after its slide-in made it visible) for keyboard users.
  if (open) setTimeout(() => $(button.getAttribute("aria-controls")).focus(), 0);
}

function switchRoom(step) {
  const rooms = [...app.rooms.values()];
  if (rooms.length < 2) return;
  const index = rooms.indexOf(app.current);
  selectRoom(rooms[(index + step + rooms.length) % rooms.length]);
}

function bindChatUi() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
    ui.input.focus();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  ui.input.addEventListener("input", () => {
    autosize();
    updateSendButton();
    typed();
  });
  ui.input.addEventListener("blur", stopTyping);
  ui.roomForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = normalizeRoom(ui.roomInput.value);
    if (!name) {
      ui.roomError.textContent = "Use letters, digits, “-”, “_” or “.”.";
      return;
    }
    ui.roomError.textContent = "";
    ui.roomInput.value = "";
    joinRoom(name);
    ui.input.focus();
  });
  ui.roomInput.addEventListener("input", () => (ui.roomError.textContent = ""));
  ui.changeName.addEventListener("click", signOut);
  ui.toggleRooms.addEventListener("click", () => toggleDrawer("rooms", ui.toggleRooms));
  ui.togglePeople.addEventListener("click", () => toggleDrawer("people", ui.togglePeople));
  ui.scrim.addEventListener("click", closeDrawers);
  ui.jump.addEventListener("click", scrollToBottom);
  ui.scroller.addEventListener("scroll", () => {
    if (nearBottom()) ui.jump.hidden = true;
  });
  document.addEventListener("keydown", (event) => {
    if (ui.chatScreen.hidden) return;
    if (event.key === "Escape") {
      const open = ui.app.classList.contains("rooms-open")
        ? ui.toggleRooms
        : ui.app.classList.contains("people-open")
          ? ui.togglePeople
          : null;
      closeDrawers();
      if (open) open.focus();
    }
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      switchRoom(event.key === "ArrowUp" ? -1 : 1);
    }
  });
  window.addEventListener("hashchange", () => {
    const name = roomFromHash();
    if (name && !ui.chatScreen.hidden) joinRoom(name);
  });
}

// ---- join / sign out -------------------------------------------------------------------------

function showJoin() {
  ui.chatScreen.hidden = true;
  ui.joinScreen.hidden = false;
  ui.joinRoomName.textContent = `#${roomFromHash() || DEFAULT_ROOM}`;
  ui.nickname.value = app.nick || loadJSON(NICK_KEY, "");
  ui.nickname.focus();
}

function enterChat(nick) {
  app.nick = nick;
  saveJSON(NICK_KEY, nick);
  ui.joinScreen.hidden = true;
  ui.chatScreen.hidden = false;
  ui.meName.textContent = nick;
  ui.meAvatar.replaceWith(Object.assign(avatar(nick), { id: "me-avatar" }));
  ui.meAvatar = $("me-avatar");
  const saved = loadJSON(ROOMS_KEY, []);
  const names = Array.isArray(saved) ? saved.map((n) => normalizeRoom(String(n))).filter(Boolean) : [];
  if (names.length === 0) names.push(DEFAULT_ROOM);
  const wanted = roomFromHash() || names[0];
  for (const name of names) joinRoom(name, { select: false });
  startClient();
  joinRoom(wanted);
  updateSendButton();
  ui.input.focus();
}

function signOut() {
  stopTyping();
  if (app.client) app.client.close();
  app.client = null;
  app.outbox = [];
  app.sending = null;
  app.labels.clear();
  for (const room of app.rooms.values()) {
    for (const entry of room.typing.values()) clearTimeout(entry.timer);
    room.list.remove();
  }
  app.rooms.clear();
  app.current = null;
  ui.activity.replaceChildren();
  ui.banner.hidden = true;
  showJoin();
}

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const nick = ui.nickname.value.trim().replace(/\s+/g, " ").slice(0, MAX_NICK);
  if (!nick) {
    ui.joinError.textContent = "Please enter a name.";
    ui.nickname.focus();
    return;
  }
  ui.joinError.textContent = "";
  enterChat(nick);
});
ui.nickname.addEventListener("input", () => (ui.joinError.textContent = ""));

bindChatUi();
const savedNick = loadJSON(NICK_KEY, "");
if (typeof savedNick === "string" && savedNick.trim()) enterChat(savedNick.trim().slice(0, MAX_NICK));
else showJoin();
