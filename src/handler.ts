/**
 * Types for handler authors: what a handler module may export, typed by codec.
 *
 *     import type { Routes, SetupInfo } from 'shoal';
 *     export const routes: Routes<'json'> = { 1: (msg) => ({ ok: true }) };
 *
 * The runtime (workers/runtime.ts) checks the same shapes when it loads a module.
 */
import type { SerializedError } from './errors.js';
import type { Codec } from './options.js';
import type { RespValue } from './resp.js';
import type { HandlerContext } from '../workers/runtime.js';
import type { AffinityKeyValue } from './dispatch/affinity.js';

export type { BroadcastOptions, Handler, HandlerContext } from '../workers/runtime.js';

/** What a handler gets as its message under each codec. */
export interface CodecMessage {
  /** A Buffer view of the frame body, valid until the handler returns (copy it to keep it). */
  raw: Buffer;
  /** The body decoded as UTF-8. */
  utf8: string;
  /** The body parsed as JSON. */
  json: unknown;
  /** A Redis command's arguments (RESP framing): views of the frame, valid until the handler returns (copy what you keep). */
  resp: Buffer[];
}

/**
 * One reply: bytes, a string, or under the json codec any JSON value. `null` or
 * `undefined` send none.
 */
export type ReplyValue<C extends Codec = Codec> = C extends 'json' ? unknown : C extends 'resp' ? RespValue | undefined : Uint8Array | string | null | undefined;

/**
 * What a handler returns: one reply, an array of replies (one frame each, in order), or a
 * Promise of either. Under the `resp` codec one RESP value (an array is a RESP array reply).
 */
export type HandlerResult<C extends Codec = Codec> = C extends 'resp'
  ? ReplyValue<C> | Promise<ReplyValue<C>>
  : ReplyValue<C> | ReplyValue<C>[] | Promise<ReplyValue<C> | ReplyValue<C>[]>;

/**
 * A handler for one codec; `M` narrows the message (e.g. a JSON request type).
 *
 *     const add: HandlerFor<'json', { numbers: number[] }> = (msg) => ({ sum: msg.numbers.reduce((a, b) => a + b, 0) });
 */
export type HandlerFor<C extends Codec = 'raw', M = CodecMessage[C]> = (message: M, ctx: HandlerContext) => HandlerResult<C>;

/** Routes by message id (with the `routing` option): an object keyed by id, or a Map. */
export type Routes<C extends Codec = 'raw'> = Record<number, HandlerFor<C, any>> | Map<number, HandlerFor<C, any>>;

/** What setup() gets: the worker's thread id (0 on the main thread with `workers: 0`). */
export interface SetupInfo {
  readonly threadId: number;
}

/** The reply sent for a failed message under `onHandlerError: 'error-frame'`. */
export type ErrorReply<C extends Codec = 'raw'> = (error: SerializedError, ctx: HandlerContext) => ReplyValue<C> | ReplyValue<C>[];

/**
 * Everything a handler module may export (a default handler or `handler`, or `routes`,
 * plus the optional hooks). Useful as `satisfies HandlerModule<'json'>` on an object
 * exported as default.
 */
export interface HandlerModule<C extends Codec = 'raw'> {
  default?: HandlerFor<C, any>;
  handler?: HandlerFor<C, any>;
  routes?: Routes<C>;
  /** Once per worker, before any traffic. A throw fails the load (SHOAL_HANDLER_LOAD_FAILED). */
  setup?(info: SetupInfo): unknown;
  /** Once per worker, when the pool closes (server close, or the old pool after a reload). */
  teardown?(): unknown;
  errorReply?: ErrorReply<C>;
  /**
   * Keyed affinity: runs on the main thread with the frame body as the framing cut it
   * (not decoded; keep it cheap). Messages whose keys are equal run on the same worker,
   * one at a time, in arrival order (worker-local state per key); null or undefined:
   * no affinity. `MAIN_THREAD` runs the message on the main thread, in order (state kept
   * there, no hand-off). A worker's death or a reload loses its state (event 'affinityLost').
   */
  affinityKey?(frame: Buffer): AffinityKeyValue;
  /** The codec this module is written for; used unless the server's `codec` option is given (then they must agree). */
  codec?: C;
}
