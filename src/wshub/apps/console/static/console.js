// wshub operator console: the hub's HTTP API, read once a second and drawn as SVG.
//
// Only public interfaces: GET /api/nodes, /api/channels, /api/presence/{c}, /api/history/{c},
// POST /api/publish and /api/disconnect (docs/http-api.md). The API key is asked for on the
// page, kept in this tab's sessionStorage (never localStorage, never a cookie) and sent as
// "Authorization: Bearer"; nothing is shown before the API accepted it.

const KEY_STORAGE = "wshub.console.apiKey";
const POLL_MS = 1000;
const DETAIL_EVERY = 2; // polls between two refreshes of the selected channel
const POINTS = 120; // two minutes of one-second samples
const OFFLINE_AFTER = 5; // failed polls in a row before "reconnecting" becomes "offline"
const HISTORY_SHOWN = 20;
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 240;
const CHART_H = 60;

// One chart per figure: a level (summed over nodes) or a rate of a counter (per second).
const CHARTS = [
  { counter: "connections", label: "Connections", rate: false },
  { counter: "subscriptions", label: "Subscriptions", rate: false },
  { counter: "publications", label: "Publications/s", rate: true },
  { counter: "deliveries", label: "Deliveries/s", rate: true },
  { counter: "bytes_received", label: "Bytes in/s", rate: true, bytes: true },
  { counter: "bytes_sent", label: "Bytes out/s", rate: true, bytes: true },
  { counter: "slow_consumer_disconnects", label: "Slow-consumer disconnects/s", rate: true },
  { counter: "drops", label: "Drops/s", rate: true },
  { counter: "recoveries", label: "Recoveries/s", rate: true },
  { counter: "rate_limited", label: "Rate-limit refusals/s", rate: true },
];

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  timer: null,
  failures: 0,
  polls: 0,
  previous: new Map(), // node id -> {time, counters}
  series: new Map(CHARTS.map((c) => [c.counter, []])),
  channels: [],
  listing: false, // a GET /api/channels is in flight
  selected: null,
  charts: new Map(), // counter -> {line, area, value}
};

class Unauthorized extends Error {}

// --- API ---------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized();
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  return { status: response.status, ok: response.ok, body: json };
}

function errorText(answer) {
  const error = answer.body && answer.body.error;
  return error ? `${error.message} (${answer.status})` : `HTTP ${answer.status}`;
}

// --- status ------------------------------------------------------------------------------

function setStatus(value) {
  const status = $("status");
  if (status.dataset.state === value) return;
  status.dataset.state = value;
  status.textContent = value;
}

// --- sign in and out ---------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  setStatus("offline");
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("api-key").value = "";
  $("api-key").focus();
}

function showDashboard() {
  $("login").hidden = true;
  $("login-error").textContent = "";
  $("dashboard").hidden = false;
  $("logout").hidden = false;
}

async function login(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    $("login-error").textContent = "Enter the API key.";
    return;
  }
  $("login-button").disabled = true;
  state.key = key;
  try {
    const answer = await api("GET", "/api/nodes");
    if (!answer.ok) throw new Error(errorText(answer));
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    showDashboard();
    startPolling();
  } catch (error) {
    state.key = null;
    if (error instanceof Unauthorized) showLogin("wrong key");
    else $("login-error").textContent = "The hub does not answer; try again.";
  } finally {
    $("login-button").disabled = false;
  }
}

// --- polling -----------------------------------------------------------------------------

function startPolling() {
  stopPolling();
  state.failures = 0;
  poll();
}

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

// The figures are read every second; the channel list (one store read per channel on the
// hub, slower on a big Redis hub) at most as often, never two requests at once, so that a
// slow list never holds the figures back.
async function poll() {
  state.timer = null;
  const key = state.key;
  try {
    const nodes = await api("GET", "/api/nodes");
    if (!nodes.ok) throw new Error(errorText(nodes));
    state.failures = 0;
    setStatus("connected");
    showNodes(nodes.body.nodes);
    record(nodes.body.nodes);
    $("updated").textContent = new Date().toLocaleTimeString();
    state.polls += 1;
    if (!state.listing) refreshChannels();
    if (state.selected !== null && state.polls % DETAIL_EVERY === 0) showDetail(state.selected);
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin("wrong key");
      return;
    }
    state.failures += 1;
    setStatus(state.failures > OFFLINE_AFTER ? "offline" : "reconnecting");
  }
  if (state.key !== null && state.key === key) state.timer = setTimeout(poll, POLL_MS);
}

async function refreshChannels() {
  state.listing = true;
  try {
    const channels = await api("GET", "/api/channels");
    if (channels.ok) {
      state.channels = channels.body.channels;
      showChannels();
    }
  } catch (error) {
    if (error instanceof Unauthorized) showLogin("wrong key");
    // A network failure shows in the status; the next poll lists again.
  } finally {
    state.listing = false;
  }
}

// --- nodes -------------------------------------------------------------------------------

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showNodes(nodes) {
  const list = $("nodes");
  list.replaceChildren(
    ...nodes.map((node, index) => {
      const item = element("li", "node");
      item.setAttribute("data-testid", "console-node");
      item.dataset.node = node.node;
      item.dataset.connections = String(node.counters.connections);
      const title = element("div", "node-title");
      title.append(element("span", "node-name", node.name));
      if (index === 0) title.append(element("span", "tag", "serving this page"));
      const facts = element("dl", "node-facts");
      for (const [label, value] of [
        ["version", node.version],
        ["uptime", duration(node.uptime)],
        ["connections", String(node.counters.connections)],
        ["subscriptions", String(node.counters.subscriptions)],
        ["id", node.node],
      ]) {
        const row = element("div");
        row.append(element("dt", "", label), element("dd", "", value));
        facts.append(row);
      }
      item.append(title, facts);
      return item;
    }),
  );
  const total = (name) => nodes.reduce((sum, node) => sum + (node.counters[name] || 0), 0);
  $("total-connections").textContent = String(total("connections"));
  $("total-subscriptions").textContent = String(total("subscriptions"));
  $("total-nodes").textContent = String(nodes.length);
}

// --- charts ------------------------------------------------------------------------------

function svg(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function buildCharts() {
  const container = $("charts");
  for (const chart of CHARTS) {
    const figure = element("figure", "chart");
    figure.dataset.chart = chart.counter;
    const caption = element("figcaption");
    const value = element("span", "chart-value", "—");
    caption.append(element("span", "chart-label", chart.label), value);
    const drawing = svg("svg", {
      viewBox: `0 0 ${CHART_W} ${CHART_H}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${chart.label}, last two minutes`,
    });
    const area = svg("path", { class: "area", d: "" });
    const line = svg("path", { class: "line", d: "" });
    drawing.append(area, line);
    figure.append(caption, drawing);
    container.append(figure);
    state.charts.set(chart.counter, { line, area, value });
  }
}

// Adds one sample per chart: levels summed over the nodes, rates from each node's previous
// report (a node seen for the first time, or restarted, adds nothing to a rate).
function record(nodes) {
  const seen = new Map();
  for (const chart of CHARTS) {
    let sum = 0;
    let known = !chart.rate;
    for (const node of nodes) {
      const value = node.counters[chart.counter];
      if (value === undefined) continue;
      if (!chart.rate) {
        sum += value;
        continue;
      }
      const before = state.previous.get(node.node);
      const elapsed = before ? node.time - before.time : 0;
      const delta = before ? value - (before.counters[chart.counter] || 0) : -1;
      if (elapsed > 0 && delta >= 0) {
        sum += delta / elapsed;
        known = true;
      } else if (before && elapsed === 0 && delta >= 0) {
        known = true; // the same report again: nothing happened in between
      }
    }
    const series = state.series.get(chart.counter);
    series.push(known ? sum : null);
    if (series.length > POINTS) series.shift();
    draw(chart, series);
  }
  for (const node of nodes) seen.set(node.node, { time: node.time, counters: node.counters });
  state.previous = seen;
}

function format(value, chart) {
  if (value === null || value === undefined) return "—";
  if (chart.bytes) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = value;
    let unit = 0;
    while (v >= 1024 && unit < units.length - 1) {
      v /= 1024;
      unit += 1;
    }
    return `${v.toFixed(v < 10 && unit > 0 ? 1 : 0)} ${units[unit]}/s`;
  }
  return chart.rate ? value.toFixed(value < 10 ? 1 : 0) : String(Math.round(value));
}

function draw(chart, series) {
  const parts = state.charts.get(chart.counter);
  const max = Math.max(1, ...series.filter((v) => v !== null));
  const step = CHART_W / (POINTS - 1);
  const offset = POINTS - series.length;
  let line = "";
  let area = "";
  let run = [];
  const flush = () => {
    if (run.length === 0) return;
    line += run.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
    const first = run[0][0].toFixed(1);
    const last = run[run.length - 1][0].toFixed(1);
    area += `M${first},${CHART_H}` + run.map(([x, y]) => `L${x.toFixed(1)},${y.toFixed(1)}`).join("");
    area += `L${last},${CHART_H}Z`;
    run = [];
  };
  series.forEach((value, index) => {
    if (value === null) {
      flush();
      return;
    }
    run.push([(offset + index) * step, CHART_H - 2 - (value / max) * (CHART_H - 6)]);
  });
  flush();
  parts.line.setAttribute("d", line);
  parts.area.setAttribute("d", area);
  parts.value.textContent = format(series[series.length - 1], chart);
}

// --- channels ----------------------------------------------------------------------------

function showChannels() {
  const filter = $("channel-filter").value.trim().toLowerCase();
  const shown = state.channels.filter((c) => c.channel.toLowerCase().includes(filter));
  const list = $("channels");
  const focused = document.activeElement && document.activeElement.closest("#channels li");
  const focusedName = focused ? focused.dataset.channel : null;
  const rows = new Map([...list.children].map((li) => [li.dataset.channel, li]));
  const wanted = shown.map((c) => c.channel);
  const same = wanted.length === rows.size && wanted.every((name, i) => list.children[i].dataset.channel === name);
  const items = shown.map((c) => {
    const item = rows.get(c.channel) || channelRow(c.channel);
    item.dataset.subscribers = String(c.subscribers);
    item.dataset.offset = String(c.offset);
    item.querySelector(".subs").textContent = String(c.subscribers);
    item.querySelector(".offset").textContent = String(c.offset);
    item.classList.toggle("selected", c.channel === state.selected);
    item.querySelector("button").setAttribute("aria-pressed", String(c.channel === state.selected));
    return item;
  });
  if (!same) {
    list.replaceChildren(...items);
    if (focusedName !== null) {
      const again = [...list.children].find((li) => li.dataset.channel === focusedName);
      if (again) again.querySelector("button").focus();
    }
  }
  $("channels-empty").hidden = shown.length > 0;
  $("channels-empty").textContent = state.channels.length ? "No channel matches." : "No channel yet.";
}

function channelRow(name) {
  const item = element("li", "channel");
  item.setAttribute("data-testid", "console-channel");
  item.dataset.channel = name;
  const button = element("button", "channel-button");
  button.type = "button";
  button.append(element("span", "name", name), element("span", "subs"), element("span", "offset"));
  button.addEventListener("click", () => select(name));
  item.append(button);
  return item;
}

function select(name) {
  state.selected = name;
  $("publish-channel").value = name;
  showChannels();
  showDetail(name);
}

async function showDetail(name) {
  $("detail-none").hidden = true;
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  const path = encodeURIComponent(name);
  try {
    const [presence, history] = await Promise.all([
      api("GET", `/api/presence/${path}`),
      api("GET", `/api/history/${path}?limit=${HISTORY_SHOWN}`),
    ]);
    if (state.selected !== name) return;
    showPresence(presence);
    showPublications(history);
  } catch (error) {
    if (error instanceof Unauthorized) showLogin("wrong key");
  }
}

function showPresence(answer) {
  const list = $("presence");
  if (!answer.ok) {
    const text = answer.status === 404 ? "Presence is off in this namespace." : errorText(answer);
    list.replaceChildren(element("li", "muted", text));
    return;
  }
  const clients = answer.body.clients;
  if (clients.length === 0) {
    list.replaceChildren(element("li", "muted", "Nobody."));
    return;
  }
  list.replaceChildren(
    ...clients.map((client) => {
      const item = element("li", "client");
      item.dataset.client = client.client;
      const nick = client.meta && typeof client.meta.nick === "string" ? client.meta.nick : "";
      const who = element("span", "who", client.user || nick || "anonymous");
      const id = element("code", "client-id", client.client.slice(0, 8));
      id.title = client.client;
      const kick = element("button", "ghost small", "Disconnect");
      kick.type = "button";
      kick.setAttribute("aria-label", `Disconnect client ${client.client}`);
      kick.addEventListener("click", () => disconnect({ client: client.client }));
      item.append(who, id, kick);
      return item;
    }),
  );
}

function showPublications(answer) {
  const list = $("publications");
  if (!answer.ok) {
    const text = answer.status === 404 ? "This namespace keeps no history." : errorText(answer);
    list.replaceChildren(element("li", "muted", text));
    return;
  }
  const pubs = answer.body.publications.slice().reverse();
  if (pubs.length === 0) {
    list.replaceChildren(element("li", "muted", "Nothing stored."));
    return;
  }
  list.replaceChildren(
    ...pubs.map((pub) => {
      const item = element("li", "publication");
      item.dataset.offset = String(pub.offset);
      const meta = element("span", "pub-meta", `#${pub.offset} · ${new Date(pub.time).toLocaleTimeString()}`);
      item.append(meta, element("code", "pub-data", JSON.stringify(pub.data)));
      return item;
    }),
  );
}

// --- actions -----------------------------------------------------------------------------

function say(result, text, bad) {
  result.textContent = text;
  result.classList.toggle("bad", bad);
}

// Sends one action and says how it went in `result`: `done(body)` words a success.
async function act(result, path, body, done, unreachable) {
  try {
    const answer = await api("POST", path, body);
    if (answer.ok) {
      say(result, done(answer.body), false);
      if (state.selected !== null) showDetail(state.selected);
    } else {
      say(result, `Refused: ${errorText(answer)}`, true);
    }
  } catch (error) {
    if (error instanceof Unauthorized) showLogin("wrong key");
    else say(result, unreachable, true);
  }
}

async function publish(event) {
  event.preventDefault();
  const channel = $("publish-channel").value.trim();
  const text = $("publish-data").value;
  const result = $("publish-result");
  if (!channel) {
    say(result, "Enter a channel.", true);
    return;
  }
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  $("publish-button").disabled = true;
  await act(
    result,
    "/api/publish",
    { channel, data },
    (body) => `Published to ${channel} at offset ${body.offset}.`,
    "The hub does not answer; nothing was published.",
  );
  $("publish-button").disabled = false;
}

function disconnect(target) {
  const who = target.user !== undefined ? `user ${target.user}` : `client ${target.client}`;
  return act(
    $("disconnect-result"),
    "/api/disconnect",
    target,
    (body) => {
      const n = body.disconnected;
      return `Disconnected ${who}: ${n} connection${n === 1 ? "" : "s"} on this node (other nodes close theirs too).`;
    },
    "The hub does not answer.",
  );
}

function disconnectSubmitted(event) {
  event.preventDefault();
  const id = $("disconnect-id").value.trim();
  if (!id) {
    say($("disconnect-result"), "Enter an id.", true);
    return;
  }
  const by = document.querySelector('input[name="disconnect-by"]:checked').value;
  disconnect(by === "user" ? { user: id } : { client: id });
}

// --- start -------------------------------------------------------------------------------

function start() {
  buildCharts();
  $("login-form").addEventListener("submit", login);
  $("publish-form").addEventListener("submit", publish);
  $("disconnect-form").addEventListener("submit", disconnectSubmitted);
  $("channel-filter").addEventListener("input", showChannels);
  $("logout").addEventListener("click", () => showLogin(""));
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) {
    state.key = key;
    showDashboard();
    startPolling();
  } else {
    showLogin("");
  }
}

start();
