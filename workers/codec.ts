/**
 * Codecs: how a handler sees a message and how its return value becomes bytes.
 * Pure functions, shared by the workers and the inline runtime.
 *
 *   raw   handler gets a Buffer (a view, no copy); returns bytes or a string
 *   utf8  handler gets a string; returns a string or bytes
 *   json  handler gets the parsed value; returns any JSON value (bytes pass through)
 *   resp  handler gets a Redis command as Buffer[] (views, no copy); returns one RESP
 *         value (src/resp.ts), packed as one reply (an array is a RESP array)
 *
 * In every other codec an array return value means several reply frames; to reply
 * one JSON array under the json codec, wrap it: `return [[1, 2, 3]]`.
 */
import { BadRequestError, HandlerError } from '../src/errors.js';
import type { Codec } from '../src/options.js';
import { parseCommand } from '../src/framing/resp.js';
import { encodeResp } from '../src/resp.js';
import type { RespValue } from '../src/resp.js';

// One definition of each (the option table's): re-exported for the worker side.
export type { Codec };

export function decodeMessage(body: Buffer, codec: Codec): unknown {
  if (codec === 'raw') return body;
  if (codec === 'resp') return parseCommand(body);
  const text = body.toString('utf8');
  if (codec === 'utf8') return text;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`message is not valid JSON: ${(err as Error).message}`);
  }
}

export function encodeReply(value: unknown, codec: Codec): Uint8Array {
  if (codec === 'resp') return encodeResp(value as RespValue);
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (codec === 'json') {
    const text = JSON.stringify(value);
    if (text === undefined) throw new HandlerError(`handler returned a value JSON cannot encode (${typeof value})`);
    return Buffer.from(text, 'utf8');
  }
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new HandlerError(`a '${codec}' handler must return bytes, a string, an array of them, or null (got ${typeof value})`);
}
