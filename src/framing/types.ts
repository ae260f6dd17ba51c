import type { SerializedError } from '../errors.js';

/**
 * Framing: pure byte-stream cutters. No sockets, no timers: bytes in, frames out.
 *
 * A decoder is pull-based, like tokio-util's `Decoder::decode(&mut buf)`: the
 * caller (FrameReader) owns the buffer and asks for one frame at a time. Pulling
 * rather than pushing lets a connection stop mid-chunk when a budget is hit
 * (frames in flight, send queue) and resume later without losing bytes.
 */

export interface FrameDecoder {
  /**
   * Try to cut one frame from `buf`, starting at `offset` (bytes before it are
   * consumed already). On success return the frame (a view into `buf`, never a
   * copy) and set `consumed` to the number of bytes it took from `offset` (> 0).
   * When more bytes are needed return null and set `needed` to the total number
   * of bytes from `offset` that must be buffered before calling again (or
   * `buf.length - offset + 1` when unknown). Throw a ShoalError for bad input.
   */
  decode(buf: Buffer, offset: number): Buffer | null;
  consumed: number;
  needed: number;
}

/** Frames reply bodies for the wire; enforces the same maximum as the decoder. */
export interface FrameEncoder {
  /** Bytes on the wire for a reply body of `bodyLength` bytes (throws if it cannot be framed). */
  frameLength(bodyLength: number): number;
  /** Write the framed body into `out` at `offset`; returns the bytes written (= frameLength). */
  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number;
  /**
   * Frames are their bodies (RESP: a reply is one RESP value): frameLength(n) is n and
   * encodeInto() only checks the body and copies it. A body its codec already made as a
   * frame (HandlerRuntime.repliesFramed) then goes out as it is, after frameLength().
   */
  readonly identity?: boolean;
  /**
   * Optional, for framings whose frame is [header][body] with the body unchanged: write
   * only the header of a `bodyLength`-byte body into `out` at `offset` and return its
   * length (frameLength(bodyLength) minus bodyLength). A large reply is then written as
   * two pieces, its body not copied.
   */
  encodeHeader?(bodyLength: number, out: Uint8Array, offset: number): number;
}

/** A framing: how to make a decoder (one per connection when it holds state) and the shared encoder. */
export interface Framing {
  readonly name: string;
  /**
   * The decoder for one connection: a fresh one when decoders keep per-stream state; a
   * stateless one may be shared (its consumed/needed are read right after each decode()).
   */
  createDecoder(): FrameDecoder;
  readonly encoder: FrameEncoder;
  /**
   * Optional: the bytes that tell the peer about an error in its own protocol's terms
   * (RESP: `-ERR Protocol error: ...`). Sent after the replies already due when a bad
   * frame closes the connection, and used as the error frame of a failed message.
   */
  readonly errorReply?: (error: SerializedError) => Uint8Array;
}

/** Byte order of a length field: big-endian or little-endian. */
export type ByteOrder = 'be' | 'le';

/** `{ type: 'length' }`: a length field, then the body (Netty's LengthFieldBasedFrameDecoder). */
export interface LengthFramingOptions {
  type: 'length';
  /** Bytes before the length field. Default 0. */
  lengthFieldOffset?: number;
  /** Size of the length field: 1, 2, 3, 4 or 8 bytes. Default 4. */
  lengthFieldLength?: 1 | 2 | 3 | 4 | 8;
  /** Default 'be' (network order). */
  byteOrder?: ByteOrder;
  /** Added to the field's value to get the bytes that follow the field (Netty's lengthAdjustment). Default 0. */
  lengthAdjustment?: number;
  /** Bytes stripped from the front of the frame before the handler sees it. Default: the whole header. */
  initialBytesToStrip?: number;
  /** Largest whole frame (header included) in bytes. Default: the server's maxFrame. */
  maxFrame?: number;
}

/** `{ type: 'line' }`: frames end at a newline. */
export interface LineFramingOptions {
  type: 'line';
  /** Strip a trailing '\r' before '\n' from decoded lines. Default true. */
  stripCR?: boolean;
  /** What the encoder ends a reply with. Default '\n'. */
  eol?: '\n' | '\r\n';
  /** Longest line in bytes, delimiter excluded. Default: the server's maxFrame. */
  maxFrame?: number;
}

/** `{ type: 'delimiter' }`: frames end at a delimiter of one or more bytes. */
export interface DelimiterFramingOptions {
  type: 'delimiter';
  /** One or more bytes that end every frame. */
  delimiter: string | Uint8Array;
  /** Longest frame in bytes, delimiter excluded. Default: the server's maxFrame. */
  maxFrame?: number;
}

/** `{ type: 'fixed' }`: every frame is exactly frameLength bytes. */
export interface FixedFramingOptions {
  type: 'fixed';
  /** Every frame is exactly this many bytes. */
  frameLength: number;
}

/** `{ type: 'raw' }`: each read is one frame. */
export interface RawFramingOptions {
  type: 'raw';
  /** Largest chunk accepted as one frame. Default: the server's maxFrame. */
  maxFrame?: number;
}

/**
 * `{ type: 'resp' }`: Redis's RESP2 requests (arrays of bulk strings, inline commands);
 * replies must be one RESP value each (the `resp` codec makes them). Limits: src/framing/resp.ts.
 */
export interface RespFramingOptions {
  type: 'resp';
  /** Largest whole command in bytes. Default: the server's maxFrame. */
  maxFrame?: number;
  /** Most elements (arguments) of one command. Default 1024 * 1024. */
  maxArrayLength?: number;
  /** Largest single argument in bytes. Default: maxFrame. */
  maxBulkLength?: number;
}

/** Built-in framings are plain data, so they can be sent to workers, which encode replies. */
export type BuiltinFramingOptions =
  | LengthFramingOptions
  | LineFramingOptions
  | DelimiterFramingOptions
  | FixedFramingOptions
  | RawFramingOptions
  | RespFramingOptions;

/** The names of the built-in framings. */
export type FramingType = BuiltinFramingOptions['type'];
