// Type declarations for hotline.js, the browser client of a hotline server.
// The protocol is described in docs/protocol.md of the hotline repository.

/** The place of a publication in its channel's stream. */
export interface Position {
  /** Names the stream; "" for a channel that has no stream yet. */
  epoch: string;
  /** 1 for the first publication of an epoch, +1 per publication. */
  offset: number;
}

/** Who published, or who is present. */
export interface ClientInfo {
  user: string;
  name?: string;
}

/** A publication pushed to a subscriber, or returned by history. */
export interface Publication extends Position {
  channel: string;
  /** Any JSON value. */
  data: unknown;
  /** Absent for publications made by the server API. */
  info?: ClientInfo;
}

/** The server's gap notice: it could not prove continuity after this position. */
export interface GapNotice extends Position {
  channel: string;
  /** "broker link lost", "history trimmed", "epoch changed", "queue overflow", "offset gap" */
  reason: string;
}

/** What onRecovery reports after each (re)subscribe and each repaired gap. */
export interface RecoveryReport {
  /**
   * true: the publications after `since` have all reached onPublication.
   * false: those are lost; the subscription continues from the channel's
   * current top. Resync the application's state.
   */
  recovered: boolean;
  /** Why recovery failed ("history trimmed", "epoch changed"); "" if it did not. */
  reason: string;
  /** How many missed publications were delivered by this recovery. */
  replayed: number;
  /** The first subscribe, without a position: nothing to recover. */
  first: boolean;
  /**
   * "subscribe": subscribe() with a since position; "reconnect": a new
   * server session (the old one expired), or a WebSocket that died under
   * a continued one (what was in flight may be lost); a connection that
   * continues the session without doubt reports nothing; "gap": the
   * server's gap notice (in `gap`); "jump": a live push that did not
   * follow the last one delivered.
   */
  cause: "subscribe" | "reconnect" | "gap" | "jump";
  /** The position recovery started from: the last one delivered. */
  since: Position;
  /** The server's notice when cause is "gap", else null. */
  gap: GapNotice | null;
}

/** An error reply from the server, or a failure of the client. */
export interface HotlineError extends Error {
  /** 400, 403, 404, 429, 500, 503, 504 from the server; "timeout" when no reply came. */
  code?: number | "timeout";
  /** The channel of a refused subscribe. */
  channel?: string;
}

export interface SubscriptionHandlers {
  /** Each publication of the channel, in order, once. */
  onPublication?(p: Publication): void;
  onRecovery?(r: RecoveryReport): void;
  onJoin?(user: ClientInfo): void;
  onLeave?(user: ClientInfo): void;
  /** A refused subscribe (403, unknown namespace...). Without it, the client dispatches an "error" event. */
  onError?(err: HotlineError): void;
}

export interface Subscription {
  unsubscribe(): void;
  /** The position of the last publication delivered (or the start). */
  position(): Position;
}

export type TransportName = "websocket" | "longpoll" | "poll";

export interface HotlineOptions {
  /** The server's http(s) base URL; default: this page's origin. */
  url?: string;
  /**
   * A JWT; "" in development mode. Or a function returning one (or a
   * promise of one), called before each connection so that a reconnect
   * after the token expired uses a fresh one, and shortly before the
   * session's token expires, to renew it in band (op refresh) so the
   * session stays. Never put in a URL unless tokenInURL.
   */
  token?: string | (() => string | Promise<string>);
  /** "auto" (default): WebSocket, then long polling, then ajax polling. */
  transport?: "auto" | TransportName;
  /** ms between ajax polls (default 1000). */
  pollInterval?: number;
  /** ms before a polling fallback tries WebSocket again (default 30000). */
  upgradeAfter?: number;
  /**
   * Send the token as ?token= on the WebSocket URL instead of the
   * hotline_token cookie. Only for a server on another host than the page,
   * which a cookie cannot reach; the token then lands in access logs.
   */
  tokenInURL?: boolean;
  /** ms a request waits for its reply (default 15000; 0: no limit). */
  requestTimeout?: number;
  /** ms of silence before the connection is probed (default 30000; 0: never). */
  idleTimeout?: number;
}

export interface PresenceResult {
  clients: Array<ClientInfo & { conns: number }>;
  total?: number;
  truncated?: boolean;
}

export interface HistoryOptions {
  limit?: number;
  reverse?: boolean;
  since?: Position;
}

export interface HistoryResult extends Position {
  publications?: Publication[];
  recovered?: boolean;
  reason?: string;
  /** The server stopped early (its page limit): ask again with since = the last returned position. */
  more?: boolean;
}

export interface PublishOptions {
  /** A retry with the same key within the server's window publishes nothing and returns the first position. */
  idempotencyKey?: string;
}

export interface ConnectInfo {
  session: string;
  user: string;
  name?: string;
  protocol: string;
  /** When the session's token expires (Unix seconds); absent if it does not. */
  exp?: number;
}

/**
 * A connection to a hotline server that survives reconnects and transport
 * changes. Events: "state" (state or transport changed), "disconnect"
 * (event.detail = {code, reason} from the server), "error" (event.error:
 * a refused subscribe without an onError handler).
 */
export class Hotline extends EventTarget {
  constructor(options?: HotlineOptions);
  readonly url: string;
  readonly preference: "auto" | TransportName;
  readonly state: "connecting" | "connected" | "disconnected" | "closed";
  /** The transport in use, "" while none. */
  readonly transport: TransportName | "";
  /** Who the server thinks this client is, once connected. */
  readonly info: ConnectInfo | null;
  subscribe(channel: string, handlers?: SubscriptionHandlers, since?: Position | null): Subscription;
  publish(channel: string, data: unknown, opts?: PublishOptions): Promise<Position>;
  presence(channel: string): Promise<PresenceResult>;
  history(channel: string, opts?: HistoryOptions): Promise<HistoryResult>;
  /**
   * Forces a transport ("auto": the client chooses) and moves the session
   * onto it: subscriptions, positions and the server's queue carry over,
   * nothing is replayed.
   */
  setTransport(preference: "auto" | TransportName): void;
  /** Ends the session: the server drops it at once (its presence leaves now). */
  close(): void;
}
