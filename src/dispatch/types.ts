import type { EventEmitter } from 'node:events';
import type { ProxyHeader } from '../edge/proxy-protocol.js';
import type { SerializedError } from '../errors.js';
import type { Push } from './push-wire.js';

/**
 * Framed reply bytes: one buffer, or a frame in pieces (a header, then the handler's own
 * large body) written in order without being joined (no copy of the body).
 */
export type FramedBytes = Uint8Array | readonly Uint8Array[];

/**
 * What the dispatcher needs of a connection. Connection implements it; the
 * dispatcher never sees a socket.
 */
export interface DispatchTarget {
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /**
   * The PROXY protocol header the connection came with (destination address and
   * port, TLVs), or null. For ctx.proxy; per connection, never per message.
   */
  readonly proxy?: ProxyHeader | null;
  /**
   * Replies for `count` consecutive messages starting at `seq`, already framed
   * (null: none; FramedBytes: in pieces). `close`: close the connection after writing them. `pushes`: what
   * the message pushes to others (push-wire.ts), applied when its replies are released.
   */
  deliver(seq: number, count: number, bytes: FramedBytes | null, close: boolean, pushes?: Push[] | null): void;
  /** The dispatcher's wait lane for this connection (opaque to the connection). */
  lane: unknown;
}

/** Things the dispatcher reports upward (for logs and metrics). */
export interface DispatchEvents {
  handlerError(target: DispatchTarget, seq: number, error: SerializedError): void;
  workerFailure(error: SerializedError, messages: number): void;
}

export interface DispatcherStats {
  workers: number;
  pendingFrames: number;
  pendingBytes: number;
  batchesInFlight: number;
  framesInFlight: number;
  batchesSent: number;
  framesSent: number;
  saturated: boolean;
}

/**
 * Runs messages and routes their replies back. Emits 'saturated' when its
 * queue to the pool is full (the server then pauses reading everywhere) and
 * 'unsaturated' when it has drained to half.
 */
export interface Dispatcher extends EventEmitter {
  /** Load the handler everywhere (warm every worker); rejects with HandlerLoadError. */
  start(): Promise<void>;
  submit(target: DispatchTarget, seq: number, frame: Buffer): void;
  readonly saturated: boolean;
  stats(): DispatcherStats;
  /** Run teardown() everywhere (bounded), then stop the threads. */
  close(timeoutMs: number): Promise<void>;
}
