/**
 * Every error shoal raises carries a stable `code` (SHOAL_*). Callers and tests
 * branch on the code, never on the message text. Errors cross the worker
 * boundary as `{ code, message }` and are rebuilt here with `errorFromCode()`.
 *
 * The registry below is the single source of truth: README's error table is
 * checked against it by test/errors.test.ts.
 */

export const ERROR_CODES = {
  SHOAL_INVALID_OPTION: 'An option passed to createServer, connect or the CLI is invalid.',
  SHOAL_FRAME_TOO_LARGE: 'A frame (or its length field) exceeds the configured maximum frame size; the connection is closed.',
  SHOAL_FRAME_TRUNCATED: 'The peer closed its side in the middle of a frame; the partial frame is discarded.',
  SHOAL_FRAME_INVALID: 'The bytes cannot be a frame (e.g. a negative adjusted length, a reply of the wrong fixed size).',
  SHOAL_HANDLER_LOAD_FAILED: 'The handler module could not be loaded or exports no handler.',
  SHOAL_HANDLER_ERROR: 'A handler threw or rejected while processing a message.',
  SHOAL_HANDLER_TIMEOUT: 'A handler ran past handlerTimeout; its worker was terminated and replaced.',
  SHOAL_WORKER_DIED: 'A worker thread exited while it held messages; those messages got the error policy.',
  SHOAL_BAD_REQUEST: 'A handler rejected a message as malformed for its protocol.',
  SHOAL_POOL_SATURATED: 'The worker pool refused more work.',
  SHOAL_SERVER_CLOSED: 'The server is closed or closing.',
  SHOAL_SEND_TIMEOUT: 'The peer stopped reading: its send queue stayed above the high water mark for sendTimeout.',
  SHOAL_SEND_QUEUE_FULL: 'A push would have queued more than sendQueueLimit bytes for a connection that does not read: the connection was cut.',
  SHOAL_PUSH_INVALID: 'A push (send, broadcast, join, leave) named no valid connection id or group, had no body, or came after its message was answered.',
  SHOAL_IDLE_TIMEOUT: 'The connection sent nothing and had nothing in flight for idleTimeout.',
  SHOAL_MAX_CONNECTION_AGE: 'The connection reached maxConnectionAge: it was drained, or destroyed at the end of maxConnectionAgeGrace.',
  SHOAL_TOO_MANY_CONNECTIONS: 'maxConnections (or maxConnectionsPerIp) was reached; the new connection was closed.',
  SHOAL_PROXY_HEADER_INVALID: 'A PROXY protocol header from a trusted proxy is malformed, of a version the mode refuses, or missing; the connection is closed.',
  SHOAL_PROXY_HEADER_REFUSED: 'A PROXY protocol header came from an address not in proxyProtocol.trusted (a spoofing attempt); the connection is closed.',
  SHOAL_PROXY_HEADER_TIMEOUT: 'A trusted proxy sent no whole PROXY protocol header within proxyProtocol.headerTimeout; the connection is closed.',
  SHOAL_TLS_HANDSHAKE_FAILED: 'A TLS handshake failed or ran past tlsHandshakeTimeout; the connection is closed.',
  SHOAL_TLS_RELOAD_FAILED: 'reloadTls() could not read or use the certificate or key files; the previous ones stay in use.',
  SHOAL_CONNECTION_CLOSED: 'The connection closed before the request was answered (client side).',
  SHOAL_REQUEST_TIMEOUT: 'No reply arrived within the request timeout (client side).',
} as const;

/** Every stable error code (SHOAL_*); README's error table lists each one. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The base of every error shoal raises: branch on its stable `code`, not on the message. */
export class ShoalError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code], options);
    this.code = code;
  }
  override get name(): string {
    return this.constructor.name;
  }
  /** The shape that crosses a worker boundary. */
  toJSON(): SerializedError {
    return { code: this.code, message: this.message };
  }
}

/** SHOAL_INVALID_OPTION: an option (or CLI flag) is invalid; the message names it. */
export class InvalidOptionError extends ShoalError {
  constructor(message: string) {
    super('SHOAL_INVALID_OPTION', message);
  }
}

/** SHOAL_FRAME_TOO_LARGE: a frame (or its length field) exceeds maxFrame; `length` and `max` say by how much. */
export class FrameTooLargeError extends ShoalError {
  readonly length: number;
  readonly max: number;
  constructor(length: number, max: number) {
    super('SHOAL_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the maximum of ${max} bytes`);
    this.length = length;
    this.max = max;
  }
}

/** SHOAL_FRAME_TRUNCATED: the stream ended inside a frame (`buffered` bytes of it were discarded). */
export class FrameTruncatedError extends ShoalError {
  readonly buffered: number;
  constructor(buffered: number) {
    super('SHOAL_FRAME_TRUNCATED', `stream ended with ${buffered} bytes of an incomplete frame`);
    this.buffered = buffered;
  }
}

/** SHOAL_FRAME_INVALID: the bytes cannot be a frame. */
export class FrameInvalidError extends ShoalError {
  constructor(message: string) {
    super('SHOAL_FRAME_INVALID', message);
  }
}

/**
 * A RESP (Redis protocol) violation: SHOAL_FRAME_INVALID for bytes that cannot be a
 * command, SHOAL_FRAME_TOO_LARGE for a count or length over its limit. The message is
 * Redis's ("Protocol error: invalid bulk length"), so it can be sent to the peer as is.
 */
export class RespProtocolError extends ShoalError {
  constructor(code: 'SHOAL_FRAME_INVALID' | 'SHOAL_FRAME_TOO_LARGE', message: string) {
    super(code, `Protocol error: ${message}`);
  }
}

/** SHOAL_HANDLER_LOAD_FAILED: the handler module did not load (listen() or reload() rejects with it). */
export class HandlerLoadError extends ShoalError {
  constructor(message: string, cause?: unknown) {
    super('SHOAL_HANDLER_LOAD_FAILED', message, { cause });
  }
}

/** SHOAL_HANDLER_ERROR: a handler threw, rejected, or returned what its codec cannot encode. */
export class HandlerError extends ShoalError {
  constructor(message: string, cause?: unknown) {
    super('SHOAL_HANDLER_ERROR', message, { cause });
  }
}

/** SHOAL_HANDLER_TIMEOUT: a handler ran past handlerTimeout (`timeout` ms). */
export class HandlerTimeoutError extends ShoalError {
  readonly timeout: number;
  constructor(timeout: number) {
    super('SHOAL_HANDLER_TIMEOUT', `handler ran past handlerTimeout (${timeout} ms)`);
    this.timeout = timeout;
  }
}

/** Thrown by a handler to say "this message is malformed for my protocol". */
export class BadRequestError extends ShoalError {
  constructor(message: string) {
    super('SHOAL_BAD_REQUEST', message);
  }
}

/** A PROXY protocol header that cannot be accepted; `offset` is where the parser stopped. */
export class ProxyHeaderError extends ShoalError {
  constructor(code: 'SHOAL_PROXY_HEADER_INVALID' | 'SHOAL_PROXY_HEADER_REFUSED' | 'SHOAL_PROXY_HEADER_TIMEOUT', message: string) {
    super(code, message);
  }
}

/** An error as it crosses a worker boundary and reaches `handlerError` listeners. */
export interface SerializedError {
  code: string;
  message: string;
  /**
   * The stack of an error a handler threw (not of shoal's own errors), for the server's
   * log: with a TypeScript handler it names the .ts lines (source maps). Never sent to clients.
   */
  stack?: string;
}

/** Whether `code` is one of shoal's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** Rebuild an error that crossed a thread boundary; unknown codes become handler errors. */
export function errorFromCode(err: SerializedError): ShoalError {
  const code = isErrorCode(err.code) ? err.code : 'SHOAL_HANDLER_ERROR';
  return new ShoalError(code, err.message);
}

/** Serialize anything thrown by user code into `{ code, message }`. */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof ShoalError) return { code: err.code, message: err.message };
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const out: SerializedError = { code: isErrorCode(code) ? code : 'SHOAL_HANDLER_ERROR', message };
  if (err instanceof Error && typeof err.stack === 'string') out.stack = err.stack;
  return out;
}
