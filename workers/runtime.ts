/**
 * The handler runtime: loads the user's module, decodes a frame with the codec,
 * routes it, calls the handler, and normalizes what it returns into reply bodies.
 *
 * Used in two places with identical behaviour: inside every pool worker
 * (workers/worker.ts) and on the main thread when `workers: 0`.
 */
import { BadRequestError, HandlerLoadError, ShoalError, serializeError } from '../src/errors.js';
import type { SerializedError } from '../src/errors.js';
import { decodeMessage, encodeReply } from './codec.js';
import { importHandler } from './loader.js';
import type { Codec, ErrorPolicy } from '../src/options.js';
import type { ProxyHeader } from '../src/edge/proxy-protocol.js';
import { proxyFromBytes } from '../src/edge/proxy-wire.js';
import type { AffinityKeyFn } from '../src/dispatch/affinity.js';
import { respErrorLine } from '../src/framing/resp.js';
import { OPTIONS } from '../src/option-table.js';
import { MAX_GROUP_BYTES, P_BROADCAST, P_JOIN, P_LEAVE, P_SEND_TO } from '../src/dispatch/push-wire.js';
import type { PushIntent, PushOp } from '../src/dispatch/push-wire.js';

export type { ErrorPolicy };

/** Plain data describing the runtime; sent to workers as workerData. */
export interface RuntimeSpec {
  handlerUrl: string;
  /** The codec option; the module's `codec` export replaces it unless `codecGiven`. */
  codec: Codec;
  /** The codec was set explicitly (createServer's `codec`, --codec): a module export must agree. */
  codecGiven?: boolean;
  /**
   * The peer speaks RESP (the RESP framing): the default error reply is `-ERR <message>`
   * whatever the codec, since a RESP client matches every command to exactly one reply.
   */
  respErrors?: boolean;
  routing: { idBytes: 2 | 4 } | null;
  onHandlerError: ErrorPolicy;
}

/** What a handler gets besides the message. */
export interface HandlerContext {
  readonly connectionId: number;
  readonly sequence: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The message id when routing is on, else undefined. */
  readonly routeId: number | undefined;
  /**
   * The connection's PROXY header (destination, TLVs) when it came through a trusted
   * proxy (`proxyProtocol`), else null. remoteAddress/remotePort already name its client.
   */
  readonly proxy: ProxyHeader | null;
  /** Queue an extra reply frame, written before the handler's return value. */
  send(reply: unknown): void;
  /**
   * Push `body` (a reply value: encoded by the codec, framed for that connection) to
   * connection `connectionId`. Like every push it is sent when this message's replies
   * are released (in this connection's order), before them; a connection that has
   * closed by then is counted (server.stats().counters.pushesUndelivered), not an error.
   */
  sendTo(connectionId: number, body: unknown): void;
  /** Push `body` to every member of `options.group`, or without a group to every connection (this one included). */
  broadcast(body: unknown, options?: BroadcastOptions): void;
  /** This connection joins `group` (in effect from this message's release: its own broadcast reaches it). Groups live on the main thread; a closed connection leaves all of them. */
  join(group: string): void;
  /** This connection leaves `group`. */
  leave(group: string): void;
}

/** Where a broadcast goes: the members of `group`, or every connection. */
export interface BroadcastOptions {
  group?: string;
}

/** A handler of any codec: gets the decoded message and the context, returns replies (see HandlerFor for typed ones). */
export type Handler = (message: any, ctx: HandlerContext) => unknown;

interface HandlerModule {
  handler: Handler | null;
  routes: Map<number, Handler> | null;
  setup: ((info: { threadId: number }) => unknown) | null;
  teardown: (() => unknown) | null;
  errorReply: ((error: SerializedError, ctx: HandlerContext) => unknown) | null;
  /** Keyed affinity (src/dispatch/affinity.ts): run on the main thread, with the frame as cut. */
  affinityKey: AffinityKeyFn | null;
  /** The module's `codec` export: a module written for one codec says which (e.g. 'resp'). */
  codec: Codec | null;
}

/** Normalized replies: null (none), one body, or several in order. */
export type Replies = Uint8Array | Uint8Array[] | null;

/** What a failed message turns into under the error policy. */
export interface FailureOutcome {
  close: boolean;
  replies: Replies;
  error: SerializedError;
}

/** What a main-thread context reads its connection's address from (a DispatchTarget). */
interface Peer {
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly proxy?: ProxyHeader | null;
}

/** A push as a handler made it: the body not yet encoded. */
interface PendingPush {
  op: PushOp;
  connectionId: number;
  group: string | null;
  body: unknown;
}

/** A group name as the push wire carries it; throws SHOAL_PUSH_INVALID. */
export function checkGroup(group: unknown): string {
  if (typeof group !== 'string' || group.length === 0 || Buffer.byteLength(group, 'utf8') > MAX_GROUP_BYTES) {
    throw new ShoalError('SHOAL_PUSH_INVALID', `a group is a non-empty string of at most ${MAX_GROUP_BYTES} UTF-8 bytes (got ${typeof group === 'string' ? `${Buffer.byteLength(group)} bytes` : typeof group})`);
  }
  return group;
}

/** A push target; throws SHOAL_PUSH_INVALID. */
export function checkConnectionId(id: unknown): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 0xffffffff) {
    throw new ShoalError('SHOAL_PUSH_INVALID', `a connection id is an integer >= 1 (got ${String(id)})`);
  }
  return id;
}

/** A push body; throws SHOAL_PUSH_INVALID for null/undefined (there would be nothing to send). */
export function checkBody(body: unknown): unknown {
  if (body === null || body === undefined) throw new ShoalError('SHOAL_PUSH_INVALID', 'a push needs a body (got ' + String(body) + ')');
  return body;
}

export class Context implements HandlerContext {
  extra: unknown[] | null = null;
  /** Pushes made by the handler, in call order (encoded by the runtime when the message completes). */
  pushes: PendingPush[] | null = null;
  /** The pushes encoded by the runtime once the handler returned (what the sinks send), or null. */
  encodedPushes: PushIntent[] | null = null;
  /** Set once the message's outcome is made: a later push would have no message to travel with. */
  done = false;
  #addr: string | null;
  /** The PROXY header, or its bytes in shared memory until first read (see proxy-wire.ts). */
  #proxy: ProxyHeader | Uint8Array | null = null;
  readonly #addrBytes: Uint8Array | null;
  readonly #addrAt: number;
  readonly #addrLength: number;
  #port: number;
  #peer: Peer | null = null;

  /**
   * `remoteAddress` null: decoded on first use from `addrLength` latin1 bytes of
   * `addrBytes` at `addrAt` (in a worker the address travels as bytes beside the frame;
   * most handlers never read it).
   */
  constructor(
    readonly connectionId: number,
    readonly sequence: number,
    remoteAddress: string | null,
    remotePort: number,
    public routeId: number | undefined,
    addrBytes: Uint8Array | null = null,
    addrAt = 0,
    addrLength = 0,
  ) {
    this.#port = remotePort;
    this.#addr = remoteAddress;
    this.#addrBytes = addrBytes;
    this.#addrAt = addrAt;
    this.#addrLength = addrLength;
  }

  /**
   * On the main thread: the connection itself, read only when a handler asks (its
   * address getters cost more than a cheap handler; most never ask).
   */
  static of(peer: Peer, sequence: number): Context {
    const ctx = new Context(peer.id, sequence, null, -1, undefined);
    ctx.#peer = peer;
    return ctx;
  }

  get remotePort(): number {
    return this.#peer !== null ? this.#peer.remotePort : this.#port;
  }

  get proxy(): ProxyHeader | null {
    if (this.#peer !== null) return this.#peer.proxy ?? null;
    const p = this.#proxy;
    if (p instanceof Uint8Array) return (this.#proxy = proxyFromBytes(p));
    return p;
  }

  /** Set by whoever makes the context: the header (inline) or its bytes (in a worker). */
  setProxy(p: ProxyHeader | Uint8Array | null): void {
    this.#proxy = p;
  }

  get remoteAddress(): string {
    if (this.#addr === null) {
      if (this.#peer !== null) return this.#peer.remoteAddress;
      const b = this.#addrBytes!;
      this.#addr = Buffer.from(b.buffer, b.byteOffset + this.#addrAt, this.#addrLength).toString('latin1');
    }
    return this.#addr;
  }

  send(reply: unknown): void {
    (this.extra ??= []).push(reply);
  }

  sendTo(connectionId: number, body: unknown): void {
    this.#push(P_SEND_TO, checkConnectionId(connectionId), null, checkBody(body));
  }

  broadcast(body: unknown, options?: BroadcastOptions): void {
    const group = options?.group === undefined ? null : checkGroup(options.group);
    this.#push(P_BROADCAST, 0, group, checkBody(body));
  }

  join(group: string): void {
    this.#push(P_JOIN, 0, checkGroup(group), null);
  }

  leave(group: string): void {
    this.#push(P_LEAVE, 0, checkGroup(group), null);
  }

  #push(op: PushOp, connectionId: number, group: string | null, body: unknown): void {
    if (this.done) throw new ShoalError('SHOAL_PUSH_INVALID', `a push after message ${this.sequence} of connection ${this.connectionId} was answered (pushes travel with their message's replies)`);
    (this.pushes ??= []).push({ op, connectionId, group, body });
  }
}

/**
 * A reply value as bytes: the codec's encoding, under routing prefixed with the route id
 * (replies and pushes of a routed message carry its id). The one definition of a body.
 */
export function encodeBody(value: unknown, codec: Codec, routing: { idBytes: 2 | 4 } | null, routeId: number | undefined): Uint8Array {
  const body = encodeReply(value, codec);
  if (routeId === undefined || routing === null) return body;
  const n = routing.idBytes;
  const out = Buffer.allocUnsafe(n + body.length);
  if (n === 4) out.writeUInt32BE(routeId, 0);
  else out.writeUInt16BE(routeId, 0);
  out.set(body, n);
  return out;
}

function pick(mod: Record<string, unknown>, name: string): unknown {
  if (mod[name] !== undefined) return mod[name];
  const d = mod.default;
  return d !== null && typeof d === 'object' ? (d as Record<string, unknown>)[name] : undefined;
}

function asFunction<T>(value: unknown, name: string, url: string): T | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'function') throw new HandlerLoadError(`${name} exported by ${url} is not a function`);
  return value as T;
}

async function loadModule(url: string): Promise<HandlerModule> {
  let mod: Record<string, unknown>;
  try {
    mod = await importHandler(url);
  } catch (err) {
    if (err instanceof HandlerLoadError) throw err;
    throw new HandlerLoadError(`cannot load handler module ${url}: ${(err as Error)?.message ?? String(err)}`, err);
  }
  const handler = asFunction<Handler>(typeof mod.default === 'function' ? mod.default : pick(mod, 'handler'), 'handler', url);
  let routes: Map<number, Handler> | null = null;
  const rawRoutes = pick(mod, 'routes');
  if (rawRoutes !== undefined && rawRoutes !== null) {
    const entries = rawRoutes instanceof Map ? [...rawRoutes.entries()] : Object.entries(rawRoutes as object);
    routes = new Map();
    for (const [key, fn] of entries) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0) throw new HandlerLoadError(`route id ${String(key)} in ${url} is not an integer >= 0`);
      if (typeof fn !== 'function') throw new HandlerLoadError(`route ${id} in ${url} is not a function`);
      routes.set(id, fn as Handler);
    }
  }
  if (!handler && !routes) {
    throw new HandlerLoadError(`handler module ${url} exports no handler: export a default function, 'handler' or 'routes'`);
  }
  const codec = pick(mod, 'codec') ?? null;
  if (codec !== null && !(OPTIONS.codec.choices as readonly unknown[]).includes(codec)) {
    throw new HandlerLoadError(`the codec exported by ${url} must be one of ${OPTIONS.codec.choices.join(', ')} (got ${JSON.stringify(codec)})`);
  }
  return {
    handler,
    routes,
    codec: codec as Codec | null,
    setup: asFunction(pick(mod, 'setup'), 'setup', url),
    teardown: asFunction(pick(mod, 'teardown'), 'teardown', url),
    errorReply: asFunction(pick(mod, 'errorReply'), 'errorReply', url),
    affinityKey: asFunction(pick(mod, 'affinityKey'), 'affinityKey', url),
  };
}

/**
 * A module's affinityKey export, read without running its setup() (for a pool that
 * runs nothing on the main thread); null when it has none. Throws HandlerLoadError.
 */
export async function loadAffinityKey(url: string): Promise<AffinityKeyFn | null> {
  return (await loadModule(url)).affinityKey;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

export class HandlerRuntime {
  readonly spec: RuntimeSpec;
  readonly #mod: HandlerModule;
  #tornDown = false;

  private constructor(spec: RuntimeSpec, mod: HandlerModule) {
    this.spec = spec;
    this.#mod = mod;
  }

  /** Load the module and run its setup(); throws HandlerLoadError. */
  static async load(spec: RuntimeSpec, threadId: number): Promise<HandlerRuntime> {
    const mod = await loadModule(spec.handlerUrl);
    spec = { ...spec, codec: effectiveCodec(spec, mod.codec) };
    if (spec.routing && spec.codec === 'resp') {
      throw new HandlerLoadError(`routing cannot be used with the 'resp' codec (${spec.handlerUrl}): a RESP reply has no room for a route id`);
    }
    if (spec.routing && !mod.routes) {
      throw new HandlerLoadError(`routing is on but ${spec.handlerUrl} exports no 'routes'`);
    }
    if (!spec.routing && !mod.handler) {
      throw new HandlerLoadError(`${spec.handlerUrl} exports only 'routes': turn routing on, or export a default handler`);
    }
    if (mod.setup) {
      try {
        await mod.setup({ threadId });
      } catch (err) {
        throw new HandlerLoadError(`setup() of ${spec.handlerUrl} failed: ${(err as Error)?.message ?? String(err)}`, err);
      }
    }
    return new HandlerRuntime(spec, mod);
  }

  /**
   * Every reply body this runtime makes is already one wire frame: the `resp` codec's
   * bodies (and its error replies) are each exactly one RESP value, and the RESP framing
   * sends a value as it is. A sink may then skip the framing's check and copy.
   */
  get repliesFramed(): boolean {
    return this.spec.codec === 'resp' && this.spec.respErrors === true;
  }

  /** The module's affinityKey export, or null. */
  get affinityKey(): AffinityKeyFn | null {
    return this.#mod.affinityKey;
  }

  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    await this.#mod.teardown?.();
  }

  /**
   * Run one frame. Returns normalized replies, or a Promise of them when the
   * handler is async (sync handlers never pay for a Promise). Throws what the
   * handler throws; the caller applies the error policy via fail().
   */
  run(frame: Buffer, ctx: Context): Replies | Promise<Replies> {
    const spec = this.spec;
    let handler = this.#mod.handler;
    let body = frame;
    if (spec.routing) {
      const n = spec.routing.idBytes;
      if (frame.length < n) throw new BadRequestError(`message of ${frame.length} bytes has no ${n}-byte route id`);
      const id = n === 4 ? frame.readUInt32BE(0) : frame.readUInt16BE(0);
      const routed = this.#mod.routes!.get(id);
      if (!routed) throw new BadRequestError(`no route for message id ${id}`);
      handler = routed;
      ctx.routeId = id;
      body = frame.subarray(n);
    }
    const result = handler!(decodeMessage(body, spec.codec), ctx);
    if (isThenable(result)) return Promise.resolve(result).then((r) => this.#normalize(r, ctx));
    return this.#normalize(result, ctx);
  }

  /** Apply the error policy to a failed message. Never throws. */
  fail(err: unknown, ctx: Context): FailureOutcome {
    // A failed message has no effect on others: its pushes, joins and leaves are dropped.
    ctx.done = true;
    ctx.pushes = null;
    ctx.encodedPushes = null;
    const error = serializeError(err);
    const policy = this.spec.onHandlerError;
    if (policy === 'close') return { close: true, replies: null, error };
    if (policy === 'drop') return { close: false, replies: null, error };
    let replies: Replies;
    try {
      const custom = this.#mod.errorReply ? this.#mod.errorReply(error, ctx) : undefined;
      replies = custom === undefined ? defaultErrorReply(error, this.#errorCodec) : this.#pack(custom, ctx.routeId);
    } catch {
      replies = defaultErrorReply(error, this.#errorCodec);
    }
    return { close: false, replies, error };
  }

  /** Whose shape the default error reply takes. */
  get #errorCodec(): Codec {
    return this.spec.respErrors === true ? 'resp' : this.spec.codec;
  }

  #normalize(result: unknown, ctx: Context): Replies {
    this.#encodePushes(ctx);
    const routeId = ctx.routeId;
    if (ctx.extra === null) return this.#pack(result, routeId);
    const out: Uint8Array[] = [];
    for (const r of [...ctx.extra, result]) {
      const p = this.#pack(r, routeId);
      if (p === null) continue;
      if (Array.isArray(p)) out.push(...p);
      else out.push(p);
    }
    return out.length === 0 ? null : out;
  }

  #pack(result: unknown, routeId: number | undefined): Replies {
    // A RESP value is one reply whatever its shape: null is the null bulk, an array a RESP array.
    if (this.spec.codec === 'resp') return result === undefined ? null : encodeReply(result, 'resp');
    if (result === null || result === undefined) return null;
    if (Array.isArray(result)) {
      const out: Uint8Array[] = [];
      for (const r of result) {
        if (r === null || r === undefined) continue;
        out.push(this.#one(r, routeId));
      }
      return out.length === 0 ? null : out;
    }
    return this.#one(result, routeId);
  }

  #one(value: unknown, routeId: number | undefined): Uint8Array {
    return encodeBody(value, this.spec.codec, this.spec.routing, routeId);
  }

  /** The message's pushes with their bodies encoded, into ctx.encodedPushes; throws what encoding throws. */
  #encodePushes(ctx: Context): void {
    ctx.done = true;
    const pending = ctx.pushes;
    if (pending === null) return;
    const out: PushIntent[] = [];
    for (const p of pending) out.push({ op: p.op, connectionId: p.connectionId, group: p.group, body: p.body === null ? null : this.#one(p.body, ctx.routeId) });
    ctx.encodedPushes = out;
  }
}

/**
 * The error frame body when the module has no errorReply(): {"error":{"code","message"}},
 * or under the `resp` codec a RESP error, `-ERR <message>`.
 */
export function defaultErrorReply(error: SerializedError, codec: Codec = 'raw'): Uint8Array {
  if (codec === 'resp') return respErrorLine(error.message);
  return Buffer.from(JSON.stringify({ error: { code: error.code, message: error.message } }));
}

/** The codec a module runs under: the option when given explicitly (a differing export is an error), else the export, else the option's default. */
function effectiveCodec(spec: RuntimeSpec, exported: Codec | null): Codec {
  if (exported === null) return spec.codec;
  if (spec.codecGiven === true && exported !== spec.codec) {
    throw new HandlerLoadError(`${spec.handlerUrl} exports codec '${exported}' but the server's codec option is '${spec.codec}': drop one of them`);
  }
  return exported;
}
