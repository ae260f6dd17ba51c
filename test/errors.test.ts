import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ShoalError, errorFromCode, serializeError, FrameTooLargeError } from '../dist/src/errors.js';

describe('error codes', () => {
  it('every code is documented in README.md (fastify-style registry check)', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const missing = Object.keys(ERROR_CODES).filter((code) => !readme.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  it('every code documented in README.md exists', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const documented = new Set(readme.match(/SHOAL_[A-Z_]+/g));
    expect([...documented].filter((c) => !(c in ERROR_CODES))).toEqual([]);
  });

  it('errors cross a thread boundary as { code, message } and come back with their code', () => {
    const e = new FrameTooLargeError(5000, 1024);
    const wire = serializeError(e);
    expect(wire).toEqual({ code: 'SHOAL_FRAME_TOO_LARGE', message: 'frame of 5000 bytes exceeds the maximum of 1024 bytes' });
    const back = errorFromCode(structuredClone(wire));
    expect(back).toBeInstanceOf(ShoalError);
    expect(back.code).toBe('SHOAL_FRAME_TOO_LARGE');
  });

  it('user errors keep a known code and otherwise become SHOAL_HANDLER_ERROR', () => {
    expect(serializeError(Object.assign(new Error('bad'), { code: 'SHOAL_BAD_REQUEST' })).code).toBe('SHOAL_BAD_REQUEST');
    expect(serializeError(Object.assign(new Error('x'), { code: 'ENOENT' })).code).toBe('SHOAL_HANDLER_ERROR');
    expect(serializeError('a string')).toEqual({ code: 'SHOAL_HANDLER_ERROR', message: 'a string' });
    expect(errorFromCode({ code: 'NOPE', message: 'm' }).code).toBe('SHOAL_HANDLER_ERROR');
  });
});
