// wshub.js — the browser client of the wshub hub (wire protocol `wshub.v1`, docs/protocol.md).
//
// A dependency-free ES module. It is also the reference for writing a hub client in another
// language, so it is written to be read top to bottom:
//
//   1. HubClient opens a WebSocket with the subprotocol `wshub.v1`, sends `connect`, and keeps
//      the connection up: on loss it reconnects with exponential backoff and jitter.
//   2. Every command gets an id; its reply settles the Promise the method returned.
//   3. Each Subscription remembers the position {offset, epoch} of the last publication it
//      delivered. After a reconnect it subscribes again with `since` = that position, and the
//      hub replies with exactly the publications that were missed (protocol §4.2, §5.1).
//   4. A publish keeps its `message_id` until the hub acknowledges it; if the connection drops
//      first, the same command is sent again after the reconnect and the hub deduplicates it;
//      if the hub refuses it for now (its Redis is down), it is sent again after a backoff.
//
// Usage:
//
//   import { HubClient } from "/wshub.js";
//   const client = new HubClient("ws://127.0.0.1:8765/ws", { meta: { nick: "Alice" } });
//   client.addEventListener("state", (e) => console.log(e.detail.state));
//   client.connect();
//   const sub = await client.subscribe("chat:lobby", {
//     recent: 50,
//     onPublication: (pub) => console.log(pub.offset, pub.data),
//   });
//   const offset = await client.publish("chat:lobby", { text: "hi" });

export const SUBPROTOCOL = "wshub.v1";

/** Connection states, also dispatched as events of the same name. */
export const State = Object.freeze({
  DISCONNECTED: "disconnected", // created, connect() not called yet
  CONNECTING: "connecting", // first attempt in progress
  CONNECTED: "connected", // the hub accepted `connect`
  RECONNECTING: "reconnecting", // the connection was lost; retrying with backoff
  OFFLINE: "offline", // not trying: close() was called, the hub refused us for good, or the
  //                     browser is offline (we retry when it comes back online)
});

// What to do after each close code of the hub (protocol §7): a copy of the table of
// wshub.hub.wire.DisconnectCode, which tests/hub/test_wire.py checks this agrees with.
// Between the markers the text is JSON. A code not listed (1006: the network) means
// "reconnect".
// BEGIN DISCONNECT_CODES
export const DISCONNECT_CODES = Object.freeze({
  "1001": { "reason": "going away", "reconnect": true, "newToken": false, "slowDown": false },
  "1011": { "reason": "internal error", "reconnect": true, "newToken": false, "slowDown": false },
  "1012": { "reason": "service restart", "reconnect": true, "newToken": false, "slowDown": false },
  "4000": { "reason": "bad commands", "reconnect": false, "newToken": false, "slowDown": false },
  "4001": { "reason": "unauthorized", "reconnect": true, "newToken": true, "slowDown": false },
  "4002": { "reason": "connect timeout", "reconnect": true, "newToken": false, "slowDown": false },
  "4003": { "reason": "token expired", "reconnect": true, "newToken": true, "slowDown": false },
  "4004": { "reason": "slow consumer", "reconnect": true, "newToken": false, "slowDown": false },
  "4005": { "reason": "rate limited", "reconnect": true, "newToken": false, "slowDown": true },
  "4006": { "reason": "too many connections", "reconnect": false, "newToken": false, "slowDown": false },
  "4007": { "reason": "unsupported subprotocol", "reconnect": false, "newToken": false, "slowDown": false },
  "4008": { "reason": "disconnected", "reconnect": false, "newToken": false, "slowDown": false }
});
// END DISCONNECT_CODES
const RETRY = Object.freeze({ reconnect: true, newToken: false, slowDown: false });

/** The advice for close code `code`: DISCONNECT_CODES[code], or "reconnect". */
export function disconnectAdvice(code) {
  return DISCONNECT_CODES[code] || RETRY;
}

/** An error reply from the hub (protocol §6), or a command the client had to give up. */
export class HubError extends Error {
  /**
   * @param {number} code the hub's error code, or 0 for a client-side failure
   * @param {string} message a short text
   * @param {boolean} [temporary=false] a passing refusal (the hub's broker is down): the
   *   same command may succeed later (protocol §6, "Temporary errors")
   */
  constructor(code, message, temporary = false) {
    super(message);
    this.name = "HubError";
    this.code = code;
    this.temporary = temporary;
  }
}

/** A command that could not be retried was in flight when the connection was lost. */
export class DisconnectedError extends HubError {
  constructor(message = "disconnected") {
    super(0, message);
    this.name = "DisconnectedError";
  }
}

/** A unique message id for idempotent publishes (protocol §4.4). */
export function newMessageId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID(); // only in secure contexts (https, localhost)
  }
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One subscription to one channel. Created by HubClient.subscribe(); it lives until
 * unsubscribe() (or an `unsubscribe` push from the hub), across reconnects.
 */
export class Subscription {
  constructor(client, channel, options) {
    this.client = client;
    this.channel = channel;
    this.options = options;
    /** "subscribing", "subscribed" or "unsubscribed". */
    this.state = "subscribing";
    /** Whether the channel keeps history, i.e. whether recovery can succeed. */
    this.recoverable = false;
    /** The position of the last publication delivered: {offset, epoch}, or null. */
    this.position = options.since ? { ...options.since } : null;
    // While a subscribe or a gap fill is in flight, `pub` pushes wait here so that
    // publications are delivered in offset order, each exactly once.
    this._busy = false;
    this._queue = [];
    // Bumped on each connection loss, so that a gap fill started before it gives up.
    this._generation = 0;
    // The first subscribe's Promise callbacks, until it settles.
    this._first = null;
    // A subscribe the hub refused for now (a temporary error): refusals in a row, the timer.
    this._retries = 0;
    this._retry = null;
  }

  /** Publish in this channel; see HubClient.publish. */
  publish(data, options) {
    return this.client.publish(this.channel, data, options);
  }

  /** Who is subscribed; see HubClient.presence. */
  presence() {
    return this.client.presence(this.channel);
  }

  /** Read stored publications; see HubClient.history. */
  history(options) {
    return this.client.history(this.channel, options);
  }

  /** End the subscription. */
  unsubscribe() {
    return this.client.unsubscribe(this.channel);
  }

  // -- driven by HubClient ------------------------------------------------------------------

  /** The `subscribe` command for the current state: with `since` after a first success. */
  _command() {
    const command = { cmd: "subscribe", channel: this.channel };
    if (this.position) command.since = this.position;
    if (this.options.recent) command.recent = this.options.recent;
    return command;
  }

  /** The hub accepted the subscribe (protocol §4.2): deliver what it sent, then go live. */
  _subscribed(result, resubscribed) {
    this.state = "subscribed";
    this.recoverable = Boolean(result.recoverable);
    // `recovered` is present only when `since` was sent. false: publications were missed and
    // cannot be had; the app must drop what it shows for this channel and start again from
    // the `recent` publications that follow.
    const last = this.position;
    const fresh = result.recovered === false || !last || last.epoch !== result.epoch;
    if (result.recovered === false) {
      this._call("onReset", { channel: this.channel, reason: "unrecovered" });
    }
    // A new epoch (the hub's store came back empty): its publications so far are owed to
    // us, from its first one; they are read from history before the live ones (§6).
    const restart = result.recovered === false && last && last.epoch !== result.epoch &&
      this._fromStart(result.epoch);
    for (const pub of restart ? [] : result.publications || []) {
      if (!fresh && pub.offset <= last.offset) continue; // already delivered
      this._deliver({ ...pub, channel: this.channel, epoch: result.epoch });
    }
    if (!restart) this.position = { offset: result.offset, epoch: result.epoch };
    this._call("onSubscribe", {
      channel: this.channel,
      epoch: result.epoch,
      offset: result.offset,
      recoverable: this.recoverable,
      recovered: result.recovered,
      resubscribed,
    });
    if (restart) {
      this._catchUp(result.offset);
      return;
    }
    this._busy = false;
    this._drain();
  }

  /** Start over at the beginning of `epoch`, if history can give what it holds. */
  _fromStart(epoch) {
    if (!this.recoverable || this.options.fillGaps === false) return false;
    this.position = { offset: 0, epoch };
    return true;
  }

  /** Read from history what follows the position, up to offset `target`, then go live. */
  async _catchUp(target) {
    const generation = this._generation;
    const stale = () => this.state !== "subscribed" || generation !== this._generation;
    try {
      while (this.position.offset < target) {
        const since = this.position;
        const limit = Math.min(target - since.offset, 1000);
        const result = await this.client.history(this.channel, { since, limit });
        if (stale()) return; // the connection was lost meanwhile: the resubscribe recovers
        for (const missed of result.publications) {
          if (missed.offset === this.position.offset + 1 && missed.offset <= target) {
            this._deliver({ ...missed, channel: this.channel, epoch: result.epoch });
          }
        }
        if (this.position === since) break; // nothing usable: the next publication resyncs
      }
    } catch (error) {
      if (stale()) return;
      this.client._report(error); // e.g. trimmed: the gap stays, carry on live
    }
    this._busy = false;
    this._drain();
  }

  /** The connection was lost: the next subscribe will carry `since`. */
  _lost() {
    clearTimeout(this._retry); // the next connection subscribes at once
    this._retry = null;
    if (this.state === "subscribed") this.state = "subscribing";
    this._generation += 1;
    this._busy = false;
    this._queue = []; // anything queued will be recovered through `since`
  }

  /** A push for this channel (protocol §5). */
  _push(push) {
    switch (push.push) {
      case "pub":
        this._queue.push(push);
        this._drain();
        break;
      case "ephemeral":
        this._call("onEphemeral", push.data, push.info, push);
        break;
      case "join":
        this._call("onJoin", push.info, push);
        break;
      case "leave":
        this._call("onLeave", push.info, push);
        break;
      case "presence_diff":
        // The net change of one interval (§5): one call per client, so a page written for
        // join/leave pushes works unchanged; a client is in one list at most.
        for (const info of push.leaves) this._call("onLeave", info, push);
        for (const info of push.joins) this._call("onJoin", info, push);
        break;
      default:
        break; // unknown push types are ignored (forward compatibility)
    }
  }

  /** Deliver queued publications while nothing asynchronous is in progress. */
  _drain() {
    while (!this._busy && this.state === "subscribed" && this._queue.length > 0) {
      this._check(this._queue.shift());
    }
  }

  /** Compare a publication's position with the last one (protocol §5.1). */
  _check(pub) {
    const last = this.position;
    if (last === null) {
      this._deliver(pub);
    } else if (pub.epoch !== last.epoch) {
      // The stream restarted (store lost, channel expired): what we show is stale.
      this._resync(pub, "epoch");
    } else if (pub.offset <= last.offset) {
      // Already delivered (the hub never sends a duplicate; this is belt and braces).
    } else if (pub.offset === last.offset + 1) {
      this._deliver(pub);
    } else if (this.options.fillGaps === false) {
      this._deliver(pub); // e.g. a ticker: only the latest value matters
    } else {
      this._resync(pub, "gap");
    }
  }

  /**
   * Fetch what is missing before `pub` with `history`, then deliver it all in order.
   * For a gap, read after the last position; for a new epoch, reset and read the latest
   * `recent` publications of the new stream.
   */
  async _resync(pub, reason) {
    this._busy = true;
    const generation = this._generation;
    const stale = () => this.state !== "subscribed" || generation !== this._generation;
    const options = {};
    if (reason === "epoch") {
      this._call("onReset", { channel: this.channel, reason });
      if (!this._fromStart(pub.epoch)) this.position = null;
    }
    if (this.position) {
      // A gap, or a new epoch read from its start.
      options.since = this.position;
      options.limit = Math.min(pub.offset - this.position.offset - 1, 1000);
    } else {
      options.limit = this.options.recent || 0;
    }
    try {
      if (options.limit > 0) {
        const result = await this.client.history(this.channel, options);
        if (stale()) return; // the connection was lost meanwhile: the resubscribe recovers
        for (const missed of result.publications) {
          if (missed.offset < pub.offset) {
            this._deliver({ ...missed, channel: this.channel, epoch: result.epoch });
          }
        }
      }
    } catch (error) {
      if (stale()) return;
      // Not available (no `r` permission, trimmed, ...): the gap stays; carry on from `pub`.
      this.client._report(error);
    }
    this._deliver(pub);
    this._busy = false;
    this._drain();
  }

  _deliver(pub) {
    this.position = { offset: pub.offset, epoch: pub.epoch };
    this._call("onPublication", {
      channel: this.channel,
      offset: pub.offset,
      epoch: pub.epoch,
      time: pub.time,
      data: pub.data,
      info: pub.info,
    });
  }

  /** Call an application callback; its exceptions must not break the client. */
  _call(name, ...args) {
    const callback = this.options[name];
    if (typeof callback !== "function") return;
    try {
      callback(...args);
    } catch (error) {
      this.client._report(error);
    }
  }
}

/**
 * A connection to the hub that survives network loss.
 *
 * Events (an EventTarget; event.detail as listed):
 *   "state"        {state, previous}: every state change; also dispatched under the state's
 *                  own name: "connecting", "connected", "reconnecting", "offline"
 *   "recovered"    {channel, recovered, missed}: after a reconnect, for each subscription.
 *                  recovered false: publications were lost; the subscription's onReset ran
 *                  and the app should reload its view of the channel
 *   "retrying"     {channel, code, delay}: the hub refused a subscribe for now (its broker
 *                  is down, a temporary error): it is sent again after `delay` ms
 *   "disconnected" {code, reason}: the WebSocket closed
 *   "error"        {error}: an error nobody was waiting for (a callback threw, a refused
 *                  token, a failed resubscribe)
 */
export class HubClient extends EventTarget {
  /**
   * @param {string} url the hub's WebSocket URL, e.g. "wss://example.com/ws"
   * @param {object} [options]
   * @param {string} [options.token] a JWT; omit for an anonymous connection
   * @param {() => Promise<string>|string} [options.getToken] called for a token before
   *   each connect that has none and after the hub refused or expired one (4001, 4003);
   *   also used to refresh the token a minute before it expires
   * @param {*} [options.meta] self-declared info sent in `connect` (e.g. {nick: "Alice"})
   * @param {number} [options.minReconnectDelay=500] first backoff delay, milliseconds
   * @param {number} [options.maxReconnectDelay=20000] longest backoff delay, milliseconds
   * @param {number} [options.publishRetryTime=30000] milliseconds a publish the hub refuses
   *   for now (a temporary error: its Redis is down) keeps being sent again, with the same
   *   message id and the reconnect backoff; then its promise rejects. Infinity: no limit
   * @param {number} [options.pingInterval=25000] milliseconds between application pings that
   *   detect a dead connection (browsers cannot send WebSocket pings); 0 disables
   * @param {number} [options.pingTimeout=10000] milliseconds to wait for the ping's reply
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class (for non-browsers)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.token = options.token ?? null;
    this.getToken = options.getToken ?? null;
    this.meta = options.meta;
    this.minReconnectDelay = options.minReconnectDelay ?? 500;
    this.maxReconnectDelay = options.maxReconnectDelay ?? 20000;
    this.publishRetryTime = options.publishRetryTime ?? 30000;
    this.pingInterval = options.pingInterval ?? 25000;
    this.pingTimeout = options.pingTimeout ?? 10000;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;

    this.state = State.DISCONNECTED;
    /** The connection's id and user from the `connect` reply (null until connected). */
    this.clientId = null;
    this.user = null;
    /** Every client id this object has had: a reconnect gets a new one. */
    this.clientIds = new Set();

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // command id -> {command, resolve, reject}
    this._outbox = []; // commands waiting for a connection, in call order
    this._subs = new Map(); // channel -> Subscription
    this._attempt = 0; // failed attempts since the last successful connect
    this._wasConnected = false;
    this._stopped = false; // close() was called, or the hub refused us for good
    this._wantToken = false; // the hub refused the token: ask getToken for a new one
    this._timers = { reconnect: null, ping: null, pong: null, refresh: null };
    this._onOnline = () => this._online();
    this._onOffline = () => this._offline();
  }

  // -- connection lifecycle -------------------------------------------------------------------

  /** Start connecting (and keep the connection up until close()). */
  connect() {
    if (this.state === State.CONNECTING || this.state === State.CONNECTED) return;
    if (this.state === State.RECONNECTING && this._ws) return;
    if (typeof window !== "undefined") {
      window.addEventListener("online", this._onOnline);
      window.addEventListener("offline", this._onOffline);
    }
    this._stopped = false;
    this._setState(this._wasConnected ? State.RECONNECTING : State.CONNECTING);
    this._open();
  }

  /** Close the connection for good; pending commands fail with DisconnectedError. */
  close() {
    this._stopped = true;
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
    }
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000);
    this._dropConnection();
    for (const entry of this._outbox) entry.reject(new DisconnectedError("client closed"));
    this._outbox = [];
    this._setState(State.OFFLINE);
  }

  async _open() {
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    if (this.getToken && (this.token === null || this._wantToken)) {
      try {
        this.token = await this.getToken();
        this._wantToken = false;
      } catch (error) {
        this._report(error);
        this._scheduleReconnect();
        return;
      }
      if (this._stopped) return;
    }
    let ws;
    try {
      ws = new this.WebSocket(this.url, SUBPROTOCOL);
    } catch (error) {
      this._report(error); // a malformed URL: retrying cannot help
      this._stopped = true;
      this._setState(State.OFFLINE);
      return;
    }
    this._ws = ws;
    this._nextId = 1;
    ws.onopen = () => this._sendConnect(ws);
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // always followed by close; the browser logs the details
  }

  _sendConnect(ws) {
    const command = { cmd: "connect" };
    if (this.token !== null) command.token = this.token;
    if (this.meta !== undefined) command.meta = this.meta;
    this._send(ws, command).then(
      (result) => this._connected(ws, result),
      (error) => {
        // A refusal: the hub closes with 4001/4006 next. A lost connection: we retry anyway.
        if (!(error instanceof DisconnectedError)) this._report(error);
      },
    );
  }

  /** `connect` succeeded: resubscribe, then resend what was not acknowledged (§5.1). */
  _connected(ws, result) {
    if (ws !== this._ws) return;
    const resubscribing = this._wasConnected;
    this.clientId = result.client;
    this.user = result.user;
    this.clientIds.add(result.client);
    this._attempt = 0;
    this._wasConnected = true;
    this._scheduleRefresh(result.expires);
    // Commands are handled in order by the hub, so the subscribes go first and the
    // publishes that follow find their channels subscribed.
    for (const sub of this._subs.values()) {
      this._sendSubscribe(sub, resubscribing && sub._first === null);
    }
    const outbox = this._outbox;
    this._outbox = [];
    for (const entry of outbox) this._sendEntry(ws, entry);
    this._setState(State.CONNECTED);
    this._schedulePing();
  }

  /** The WebSocket closed: fail or keep the commands in flight, then maybe reconnect. */
  _closed(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._dropConnection();
    this._dispatch("disconnected", { code, reason });
    if (this._stopped) return;
    const advice = disconnectAdvice(code);
    if (!advice.reconnect || (advice.newToken && !this.getToken)) {
      this._stopped = true;
      this._report(new HubError(code, reason || "connection refused"));
      for (const entry of this._outbox) entry.reject(new DisconnectedError(reason));
      this._outbox = [];
      this._setState(State.OFFLINE);
      return;
    }
    if (advice.newToken) this._wantToken = true;
    if (advice.slowDown) this._attempt = Math.max(this._attempt, 30);
    this._scheduleReconnect();
  }

  /** Forget the connection: keep what can be retried, fail the rest. */
  _dropConnection() {
    this._clearTimers();
    const retry = [];
    for (const entry of this._pending.values()) {
      if (entry.retry) retry.push(entry);
      else if (entry.command.cmd !== "subscribe") entry.reject(new DisconnectedError());
    }
    this._pending.clear();
    // Retried commands go before those queued while offline: they were called earlier.
    this._outbox = retry.concat(this._outbox);
    for (const sub of this._subs.values()) sub._lost();
    this.clientId = null;
  }

  _scheduleReconnect() {
    if (typeof navigator !== "undefined" && navigator.onLine === false) {
      this._setState(State.OFFLINE); // _online() resumes
      return;
    }
    this._setState(this._wasConnected ? State.RECONNECTING : State.CONNECTING);
    // Exponential backoff with jitter: spread the reconnects of many clients after an outage.
    const base = Math.min(this.maxReconnectDelay, this.minReconnectDelay * 2 ** this._attempt);
    const delay = base / 2 + (Math.random() * base) / 2;
    this._attempt = Math.min(this._attempt + 1, 30);
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = setTimeout(() => this._open(), delay);
  }

  _online() {
    if (this._stopped || this._ws) return;
    this._attempt = 0;
    this._setState(this._wasConnected ? State.RECONNECTING : State.CONNECTING);
    this._open();
  }

  _offline() {
    // The socket may linger for a while; drop it now so that the app shows the truth.
    if (this._ws) this._ws.close(4100);
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._dispatch("state", { state, previous });
    this._dispatch(state, { previous });
  }

  // -- keepalive and token refresh -------------------------------------------------------

  _schedulePing() {
    if (!this.pingInterval) return;
    clearTimeout(this._timers.ping);
    this._timers.ping = setTimeout(() => {
      const ws = this._ws;
      if (!ws || this.state !== State.CONNECTED) return;
      this._timers.pong = setTimeout(() => ws.close(4101), this.pingTimeout);
      this._send(ws, { cmd: "ping" }).then(
        () => {
          clearTimeout(this._timers.pong);
          this._schedulePing();
        },
        () => {},
      );
    }, this.pingInterval);
  }

  _scheduleRefresh(expires) {
    clearTimeout(this._timers.refresh);
    if (!expires || !this.getToken) return;
    // A minute before expiry, or halfway there for short-lived tokens.
    const remaining = expires * 1000 - Date.now();
    const delay = Math.max(1000, Math.min(remaining - 60000, remaining / 2));
    this._timers.refresh = setTimeout(async () => {
      try {
        await this.refresh(await this.getToken());
      } catch (error) {
        this._report(error); // the hub will close with 4003; we get a new token then
      }
    }, delay);
  }

  _clearTimers() {
    for (const name of ["ping", "pong", "refresh"]) {
      clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  // -- commands ---------------------------------------------------------------------------

  /**
   * Subscribe to a channel. The Subscription survives reconnects: the client subscribes
   * again with `since` and delivers exactly the publications that were missed.
   *
   * @param {string} channel e.g. "chat:lobby"
   * @param {object} [options]
   * @param {{offset:number, epoch:string}} [options.since] recover from this position
   * @param {number} [options.recent] publications to receive on a fresh start (0–1000)
   * @param {boolean} [options.fillGaps=true] fetch a gap between offsets with `history`
   * @param {(pub) => void} [options.onPublication] {channel, offset, epoch, time, data, info}
   * @param {(info, push) => void} [options.onJoin] a client subscribed (called for each
   *   client of a `presence_diff` push, or per `join` push)
   * @param {(info, push) => void} [options.onLeave] a client left (the same)
   * @param {(data, info) => void} [options.onEphemeral] an ephemeral publication
   * @param {(event) => void} [options.onSubscribe] after each (re)subscribe, after the
   *   publications it brought: {channel, epoch, offset, recoverable, recovered, resubscribed}
   * @param {(event) => void} [options.onReset] continuity is lost ({channel, reason}:
   *   "unrecovered" or "epoch"): drop the channel's state; fresh publications follow
   * @param {(event) => void} [options.onUnsubscribe] the hub ended the subscription
   *   ({channel, code, message})
   * @returns {Promise<Subscription>} settles with the first subscribe reply
   */
  subscribe(channel, options = {}) {
    if (this._subs.has(channel)) {
      return Promise.reject(new HubError(109, "already subscribed"));
    }
    if (this._stopped) return Promise.reject(new DisconnectedError());
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    return new Promise((resolve, reject) => {
      sub._first = { resolve, reject };
      if (this.state === State.CONNECTED) this._sendSubscribe(sub, false);
    });
  }

  _sendSubscribe(sub, resubscribed) {
    const ws = this._ws;
    sub._busy = true;
    this._send(ws, sub._command()).then(
      (result) => {
        if (ws !== this._ws || this._subs.get(sub.channel) !== sub) return;
        sub._retries = 0;
        sub._subscribed(result, resubscribed);
        if (resubscribed) {
          this._dispatch("recovered", {
            channel: sub.channel,
            recovered: result.recovered !== false,
            missed: result.recovered === false ? null : result.publications.length,
          });
        }
        if (sub._first) {
          sub._first.resolve(sub);
          sub._first = null;
        }
      },
      (error) => {
        if (error instanceof DisconnectedError) return; // resubscribed after the reconnect
        if (error.temporary && this._subs.get(sub.channel) === sub) {
          this._retrySubscribe(ws, sub, resubscribed, error);
          return;
        }
        if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
        sub.state = "unsubscribed";
        if (sub._first) {
          sub._first.reject(error);
          sub._first = null;
        } else {
          this._report(error);
          sub._call("onUnsubscribe", { channel: sub.channel, code: error.code, message: error.message });
        }
      },
    );
  }

  /**
   * The hub refused the subscribe for now (its broker is down): keep the subscription and
   * its position, and ask again on this connection after a bounded, jittered backoff delay.
   */
  _retrySubscribe(ws, sub, resubscribed, error) {
    const attempt = sub._retries;
    sub._retries = Math.min(attempt + 1, 30);
    const delay = this._temporaryDelay(attempt);
    this._dispatch("retrying", { channel: sub.channel, code: error.code, delay });
    clearTimeout(sub._retry);
    sub._retry = setTimeout(() => {
      sub._retry = null;
      if (ws === this._ws && this.state === State.CONNECTED && this._subs.get(sub.channel) === sub) {
        this._sendSubscribe(sub, resubscribed);
      }
    }, delay);
  }

  /**
   * End a subscription. Nothing of the channel is delivered after this call.
   * @returns {Promise<void>}
   */
  async unsubscribe(channel) {
    const sub = this._subs.get(channel);
    if (!sub) return;
    this._subs.delete(channel);
    sub.state = "unsubscribed";
    if (sub._first) {
      sub._first.reject(new DisconnectedError("unsubscribed"));
      sub._first = null;
    }
    if (this.state !== State.CONNECTED) return; // the next connection will not subscribe it
    try {
      await this._send(this._ws, { cmd: "unsubscribe", channel });
    } catch (error) {
      if (!(error instanceof DisconnectedError) && error.code !== 110) throw error;
    }
  }

  /**
   * Publish `data` (any JSON value) in a channel.
   *
   * A normal publish is idempotent: it carries a `message_id` (made up unless given), and if
   * the connection drops before the hub acknowledges it, it is sent again after the reconnect
   * with the same id; the hub then answers with the offset it gave the first time.
   * Publishes made while disconnected wait for the connection.
   *
   * An ephemeral publish (`{ephemeral: true}`, e.g. a typing indicator, protocol §4.4.1) is
   * neither stored nor retried: while disconnected it fails at once with DisconnectedError.
   *
   * @param {string} channel
   * @param {*} data
   * @param {object} [options]
   * @param {string} [options.messageId] 1–64 characters, unique per publication
   * @param {boolean} [options.ephemeral=false]
   * @returns {Promise<number|undefined>} the publication's offset (undefined if ephemeral)
   */
  async publish(channel, data, options = {}) {
    if (options.ephemeral) {
      if (this.state !== State.CONNECTED) throw new DisconnectedError();
      await this._send(this._ws, { cmd: "publish", channel, data, ephemeral: true });
      return undefined;
    }
    const messageId = options.messageId ?? newMessageId();
    const command = { cmd: "publish", channel, data, message_id: messageId };
    // Refused for now (the hub's Redis is down): sent again with the same message id, so
    // that a publish the hub stored before failing is not made twice (protocol §6).
    const deadline = Date.now() + this.publishRetryTime;
    for (let attempt = 0; ; attempt += 1) {
      try {
        const result = await this._request(command, true);
        return result.offset;
      } catch (error) {
        if (!error.temporary) throw error;
        const delay = this._temporaryDelay(attempt);
        if (Date.now() + delay > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /** The delay before retrying a command refused for now for the attempt-th time: the
   * reconnect backoff, drawn between half and all of the step (jitter). */
  _temporaryDelay(attempt) {
    const step = this.minReconnectDelay * 2 ** Math.min(attempt, 30);
    const base = Math.min(this.maxReconnectDelay, step);
    return base / 2 + (Math.random() * base) / 2;
  }

  /**
   * Who is subscribed to a channel (protocol §4.5).
   * @returns {Promise<Array<{client:string, user:string, meta?:*}>>}
   */
  async presence(channel) {
    const result = await this._request({ cmd: "presence", channel }, true);
    return result.clients;
  }

  /**
   * Stored publications of a channel, oldest first (protocol §4.6).
   * @param {string} channel
   * @param {object} [options]
   * @param {{offset:number, epoch:string}} [options.since] only those after this position
   * @param {number} [options.limit] at most this many (1–1000, default 100)
   * @returns {Promise<{channel, epoch, offset, publications}>}
   */
  history(channel, options = {}) {
    const command = { cmd: "history", channel };
    if (options.since) command.since = options.since;
    if (options.limit) command.limit = options.limit;
    return this._request(command, true);
  }

  /**
   * Replace the connection's token without reconnecting (protocol §4.8).
   * @returns {Promise<number|null>} the new token's expiry, seconds since the Unix epoch
   */
  async refresh(token) {
    if (this.state !== State.CONNECTED) throw new DisconnectedError();
    const result = await this._send(this._ws, { cmd: "refresh", token });
    this.token = token;
    this._scheduleRefresh(result.expires);
    return result.expires;
  }

  /**
   * Send a command now if connected, else when connected.
   * @param {boolean} retry send it again after a reconnect if it was not answered
   */
  _request(command, retry) {
    return new Promise((resolve, reject) => {
      const entry = { command, resolve, reject, retry };
      if (this.state === State.CONNECTED) this._sendEntry(this._ws, entry);
      else if (this._stopped) reject(new DisconnectedError());
      else this._outbox.push(entry);
    });
  }

  _send(ws, command) {
    return new Promise((resolve, reject) => {
      this._sendEntry(ws, { command, resolve, reject, retry: false });
    });
  }

  _sendEntry(ws, entry) {
    if (!ws || ws.readyState !== 1) {
      if (entry.retry) this._outbox.push(entry);
      else entry.reject(new DisconnectedError());
      return;
    }
    const id = this._nextId++;
    this._pending.set(id, entry);
    ws.send(JSON.stringify({ id, ...entry.command }));
  }

  // -- incoming messages --------------------------------------------------------------------

  _receive(ws, text) {
    if (ws !== this._ws) return;
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      this._report(error);
      return;
    }
    if (message.push !== undefined) {
      this._onPush(message);
    } else if (message.id !== undefined && message.id !== null) {
      const entry = this._pending.get(message.id);
      if (!entry) return;
      this._pending.delete(message.id);
      if (message.error) {
        const { code, message: text, temporary } = message.error;
        entry.reject(new HubError(code, text, temporary === true));
      }
      else entry.resolve(message.result);
    } else if (message.error) {
      this._report(new HubError(message.error.code, message.error.message));
    }
  }

  _onPush(push) {
    const sub = this._subs.get(push.channel);
    if (!sub) return; // a push that raced an unsubscribe
    if (push.push === "unsubscribe") {
      this._subs.delete(push.channel);
      sub.state = "unsubscribed";
      sub._call("onUnsubscribe", { channel: push.channel, code: push.code, message: push.message });
      return;
    }
    sub._push(push);
  }

  // -- helpers ------------------------------------------------------------------------------

  _dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _report(error) {
    if (!this.dispatchEvent(new CustomEvent("error", { detail: { error }, cancelable: true }))) {
      return; // a listener called preventDefault(): it handled the error
    }
    if (typeof console !== "undefined") console.error("wshub:", error);
  }
}
