// wshub demo pages — what every page shares: where the hub is, and how the connection shows.
//
// A page's markup has a status pill (data-testid="connection-status") and a banner
// (data-testid="connection-banner"); ConnectionView keeps them in step with a HubClient's
// state and says, after a cut, that the page is back.

import { State } from "wshub";

/** The hub's WebSocket URL: the page's own host, the path from <meta name="wshub-ws-path">. */
export function wsUrl() {
  const path = document.querySelector('meta[name="wshub-ws-path"]').content;
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

const LABELS = {
  [State.DISCONNECTED]: "connecting…",
  [State.CONNECTING]: "connecting…",
  [State.CONNECTED]: "connected",
  [State.RECONNECTING]: "reconnecting…",
  [State.OFFLINE]: "offline",
};

/** The status pill, the banner, and `data-connection` on the page's root element. */
export class ConnectionView {
  /**
   * @param {object} elements {status, banner, root}
   * @param {object} texts what the banner says: {reconnecting, offline, recovered}, each
   *   [title, text]
   */
  constructor({ status, banner, root }, texts) {
    this.status = status;
    this.banner = banner;
    this.root = root;
    this.texts = texts;
    this.reconnecting = false;
    this.timer = null;
  }

  /** Follow `client`'s state changes. */
  watch(client) {
    client.addEventListener("state", (event) => this.show(event.detail.state, event.detail.previous));
    this.show(State.CONNECTING);
  }

  show(state, previous) {
    const shown = state === State.DISCONNECTED ? State.CONNECTING : state;
    this.status.textContent = LABELS[state];
    this.status.dataset.state = shown;
    this.root.dataset.connection = shown;
    if (state === State.RECONNECTING) {
      this.reconnecting = true;
      this.say("reconnecting", ...this.texts.reconnecting);
    } else if (state === State.OFFLINE) {
      this.say("offline", ...this.texts.offline);
    } else if (state === State.CONNECTED && (this.reconnecting || previous === State.OFFLINE)) {
      this.reconnecting = false;
      this.say("recovered", ...this.texts.recovered, 4000);
    }
  }

  /** Show the banner; hide it after `hideAfter` milliseconds unless 0. */
  say(kind, title, text, hideAfter = 0) {
    clearTimeout(this.timer);
    const strong = document.createElement("strong");
    strong.textContent = title;
    this.banner.dataset.kind = kind;
    this.banner.replaceChildren(strong, text);
    this.banner.hidden = false;
    if (hideAfter) this.timer = setTimeout(() => (this.banner.hidden = true), hideAfter);
  }
}
