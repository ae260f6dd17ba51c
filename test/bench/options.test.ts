import { describe, expect, it } from 'vitest';
import { parseBenchArgs, parseTarget } from '../../dist/src/bench/options.js';

const parse = (argv: string[]) => {
  const r = parseBenchArgs(argv);
  if (r.help) throw new Error('help');
  return r.options;
};

describe('shoal bench flags', () => {
  it('autocannon-style flags; bare durations are seconds', () => {
    const o = parse(['-c', '64', '-p', '16', '-d', '5', '-t', '2', '-k', '110', '-s', '16KiB', '--warmup', '500ms', '-w', '2', '-j', '-n', '9000']);
    expect(o).toMatchObject({
      host: '127.0.0.1', port: 9000, connections: 64, pipelining: 16, duration: 5000, timeout: 2000,
      iterations: 110, size: 16384, warmup: 500, workers: 2, json: true, progress: false, protocol: 'bench',
    });
    expect(parse(['-R', '20000', '-a', '100', 'localhost:1']).rate).toBe(20000);
  });

  it('targets', () => {
    expect(parseTarget('8000')).toEqual({ host: '127.0.0.1', port: 8000 });
    expect(parseTarget('[::1]:8000')).toEqual({ host: '::1', port: 8000 });
    expect(parseTarget('example.org:80')).toEqual({ host: 'example.org', port: 80 });
    expect(() => parseTarget('host:')).toThrow(/HOST:\]PORT/);
  });

  it('other framings echo a raw payload', () => {
    expect(parse(['--framing', 'line', '1'])).toMatchObject({ protocol: 'echo', framing: { type: 'line', eol: '\n' } });
    expect(parse(['--framing', 'fixed', '-s', '32', '1'])).toMatchObject({ size: 32, framing: { type: 'fixed', frameLength: 32 } });
  });

  it('bad flags are SHOAL_INVALID_OPTION with the flag named', () => {
    const bad = (argv: string[], msg: RegExp) => expect(() => parse(argv)).toThrow(expect.objectContaining({ code: 'SHOAL_INVALID_OPTION', message: expect.stringMatching(msg) }));
    bad(['-c', '0', '1'], /--connections/);
    bad(['--conections', '4', '1'], /did you mean|unknown flag/);
    bad([], /target/);
    bad(['--framing', 'line', '-k', '5', '1'], /--iterations needs --protocol bench/);
    bad(['--framing', 'line', '--protocol', 'bench', '1'], /length framing/);
    bad(['-w', '4', '-c', '2', '1'], /--workers/);
    expect(parseBenchArgs(['-h']).help).toBe(true);
  });
});
