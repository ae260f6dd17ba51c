import { describe, expect, it } from 'vitest';
import { createFraming, encodeFrame, isFraming } from '../../dist/src/framing/index.js';
import type { BuiltinFramingOptions } from '../../dist/src/framing/index.js';
import { expectShoal } from './helpers.js';

describe('createFraming', () => {
  it.each([
    [{ type: 'length' }, 'length'],
    [{ type: 'line' }, 'line'],
    [{ type: 'delimiter', delimiter: ';' }, 'delimiter'],
    [{ type: 'fixed', frameLength: 4 }, 'fixed'],
    [{ type: 'raw' }, 'raw'],
  ] as Array<[BuiltinFramingOptions, string]>)('%j builds the %s framing', (o, name) => {
    const f = createFraming(o, 1024);
    expect(f.name).toBe(name);
    expect(isFraming(f)).toBe(true);
    // Each connection gets its own decoder where it holds per-stream state; the length
    // decoder holds none and is shared (64 B less per connection).
    if (name === 'length') expect(f.createDecoder()).toBe(f.createDecoder());
    else expect(f.createDecoder()).not.toBe(f.createDecoder());
  });

  it.each([[{ type: 'json' }], [{}], [null], [undefined]])('%j is SHOAL_INVALID_OPTION naming the type', (o) => {
    const e = expectShoal(() => createFraming(o as unknown as BuiltinFramingOptions, 1024), 'SHOAL_INVALID_OPTION');
    expect(e.message).toContain('length, line, delimiter, fixed, raw');
    if (o && 'type' in o) expect(e.message).toContain('"json"');
  });

  it('uses the server maxFrame when the framing sets none', () => {
    for (const o of [{ type: 'length' }, { type: 'line' }, { type: 'delimiter', delimiter: ';' }, { type: 'raw' }] as BuiltinFramingOptions[]) {
      const f = createFraming(o, 16);
      expectShoal(() => encodeFrame(f, Buffer.alloc(17)), 'SHOAL_FRAME_TOO_LARGE', { max: 16 });
    }
  });
});

describe('isFraming', () => {
  it('accepts any object with createDecoder() and an encoder, and nothing else', () => {
    const encoder = { frameLength: (n: number) => n, encodeInto: () => 0 };
    expect(isFraming({ name: 'mine', createDecoder: () => ({}), encoder })).toBe(true);
    expect(isFraming({ createDecoder: () => ({}) })).toBe(false);
    expect(isFraming({ encoder })).toBe(false);
    expect(isFraming({ createDecoder: () => ({}), encoder: { frameLength: () => 0 } })).toBe(false);
    expect(isFraming(null)).toBe(false);
    expect(isFraming({ type: 'line' })).toBe(false);
  });
});
