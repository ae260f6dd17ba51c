import { InvalidOptionError } from '../errors.js';
import { fixedFraming } from './fixed.js';
import { lengthFraming } from './length.js';
import { delimiterFraming, lineFraming } from './line.js';
import { rawFraming } from './raw.js';
import { respFraming } from './resp.js';
import type { BuiltinFramingOptions, Framing } from './types.js';

export * from './types.js';
export { FrameReader } from './reader.js';
export { LengthFieldDecoder, LengthFieldEncoder, lengthFraming } from './length.js';
export { DelimiterDecoder, DelimiterEncoder, lineFraming, delimiterFraming } from './line.js';
export { FixedLengthDecoder, FixedLengthEncoder, fixedFraming } from './fixed.js';
export { RawDecoder, RawEncoder, rawFraming } from './raw.js';
export { RespDecoder, RespEncoder, respFraming, parseCommand, commandIs, RESP_DEFAULTS } from './resp.js';
export type { ResolvedRespOptions } from './resp.js';

/** A user-supplied framing is any object with createDecoder() and an encoder. */
export function isFraming(value: unknown): value is Framing {
  const v = value as Partial<Framing> | null;
  return (
    typeof v === 'object' && v !== null && typeof v.createDecoder === 'function' &&
    typeof v.encoder?.encodeInto === 'function' && typeof v.encoder?.frameLength === 'function'
  );
}

/** Build a framing from plain options (also used inside workers, which encode replies). */
export function createFraming(options: BuiltinFramingOptions, maxFrame: number): Framing {
  switch (options?.type) {
    case 'length':
      return lengthFraming(options, maxFrame);
    case 'line':
      return lineFraming(options, maxFrame);
    case 'delimiter':
      return delimiterFraming(options, maxFrame);
    case 'fixed':
      return fixedFraming(options, maxFrame);
    case 'raw':
      return rawFraming(options, maxFrame);
    case 'resp':
      return respFraming(options, maxFrame);
    default:
      throw new InvalidOptionError(
        `framing.type must be one of length, line, delimiter, fixed, raw, resp (got ${JSON.stringify((options as { type?: unknown })?.type)})`,
      );
  }
}

/** Encode one body into a fresh buffer (client side and tests; the server encodes in batches). */
export function encodeFrame(framing: Framing, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(framing.encoder.frameLength(body.length));
  framing.encoder.encodeInto(body, out, 0);
  return out;
}
