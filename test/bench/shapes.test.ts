import { describe, expect, it } from 'vitest';
import { openFileLimits, withOpenFiles } from '../../dist/bench/harness.js';
import { generatorSaturated } from '../../dist/bench/loadgen.js';
import {
  CELLS, PROBES, agreement, formatRatio, openRate, openTable, perConnectionKiB, ratioOf, ratioTable, selectCells, summarize,
} from '../../dist/bench/shapes-grid.js';
import type { RunFigures, ServerLabel } from '../../dist/bench/shapes-grid.js';
import { median } from '../../dist/bench/stats.js';
import { heatMap, ratioColor } from '../../dist/bench/svg.js';

const run = (rps: number, extra: Partial<RunFigures> = {}): RunFigures => ({
  rps, p50: 1, p90: 2, p99: 3, p99_9: 4, max: 5, errors: 0, genCpu: 20, genSaturated: false, serverPeakRssMiB: 100, serverCpu: 190, mainCpu: 90, otherCpu: 0, ...extra,
});
const SERVERS: ServerLabel[] = [
  { id: 'pool', label: 'workers: 2' },
  { id: 'inline', label: 'workers: 0' },
  { id: 'cluster', label: 'cluster of 2' },
];

describe('the shapes grid', () => {
  it('has the issue 10 grid: 5 shapes × 2 costs, two echoes, three open-loop cells', () => {
    const ids = CELLS.map((c) => c.id);
    for (const cost of ['100us', '1ms']) for (const s of ['1x16', '16x4', '32x2', '64x1', '256x1']) expect(ids).toContain(`${s}-${cost}`);
    expect(ids).toEqual(expect.arrayContaining(['echo64', 'echo16k', 'open-100us', 'open-1ms', 'open-echo64']));
    expect(new Set(ids).size).toBe(ids.length);
    // every open cell takes its rate from a closed, non-pipelined cell that exists
    for (const c of CELLS.filter((x) => x.kind === 'open')) {
      const base = [...CELLS, ...PROBES].find((x) => x.id === c.capacityOf);
      expect(base?.kind).toBe('closed');
      expect(base?.pipeline).toBe(1);
      expect(base?.k).toBe(c.k);
    }
  });

  it('--only picks cells and groups, and refuses unknown names', () => {
    expect(selectCells(undefined).cells).toHaveLength(CELLS.length);
    expect(selectCells(undefined).extras).toEqual(['memory', 'agree']);
    expect(selectCells('1ms').cells.map((c) => c.id)).toEqual(['1x16-1ms', '16x4-1ms', '32x2-1ms', '64x1-1ms', '256x1-1ms', 'open-1ms']);
    expect(selectCells('echo').cells.map((c) => c.id)).toEqual(['echo64', 'echo16k', 'open-echo64']);
    expect(selectCells('open,memory')).toMatchObject({ extras: ['memory'] });
    expect(selectCells('open').cells.every((c) => c.kind === 'open')).toBe(true);
    expect(selectCells('16x4-1ms,agree')).toMatchObject({ cells: [{ id: '16x4-1ms' }], extras: ['agree'] });
    expect(() => selectCells('16x4-2ms')).toThrow(/no cell or group "16x4-2ms"/);
  });

  it('open-loop rate: the fraction of capacity, two significant digits', () => {
    expect(openRate(1834, 0.5)).toBe(920);
    expect(openRate(412_345, 0.5)).toBe(210_000);
    expect(openRate(37, 0.5)).toBe(19);
    expect(openRate(0, 0.5)).toBe(0);
  });

  it('a cell is the median of its runs; one saturated run marks it', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const s = summarize([run(100, { p99: 9 }), run(300, { genSaturated: true, errors: 2 }), run(200, { p99: 1 })]);
    expect(s).toMatchObject({ runs: 3, rps: 200, rpsMin: 100, rpsMax: 300, p99: 3, errors: 2, genSaturated: true });
    expect(summarize([run(100)]).genSaturated).toBe(false);
  });

  it('the generator counts as the bottleneck at >= 90 % of a core on any thread', () => {
    expect(generatorSaturated({ percent: 89.9, threads: [89.9] })).toBe(false);
    expect(generatorSaturated({ percent: 90, threads: [90] })).toBe(true);
    expect(generatorSaturated({ percent: 120, threads: [95, 25] })).toBe(true);
    expect(generatorSaturated({ percent: 120, threads: [60, 60] })).toBe(false);
  });

  it('ratios: pool over each baseline, ⚑ when either side was generator-bound', () => {
    const summaries = {
      '16x4-1ms': { pool: summarize([run(1800)]), inline: summarize([run(900)]), cluster: summarize([run(2000)]) },
      echo64: { pool: summarize([run(300_000)]), inline: summarize([run(400_000, { genSaturated: true })]) },
    };
    expect(ratioOf(summaries['16x4-1ms'], 'inline')).toEqual({ value: 2, saturated: false, noisy: false });
    const busy = { pool: summarize([run(1800, { otherCpu: 35 })]), inline: summarize([run(900)]) };
    expect(formatRatio(ratioOf(busy, 'inline'))).toBe('2.00× ≈'); // other load on the cores: noise
    expect(formatRatio(ratioOf(summaries['16x4-1ms'], 'cluster'))).toBe('0.90×');
    expect(formatRatio(ratioOf(summaries.echo64, 'inline'))).toBe('0.75× ⚑');
    expect(formatRatio(ratioOf(summaries.echo64, 'cluster'))).toBe('n/a');
    const table = ratioTable(CELLS.filter((c) => c.id === '16x4-1ms' || c.id === 'echo64'), summaries, SERVERS);
    expect(table[0]).toBe('| load | workers: 2 req/s | workers: 0 req/s | cluster of 2 req/s | workers: 2 / workers: 0 | workers: 2 / cluster |');
    expect(table[2]).toBe('| 16 × 4, ~1 ms | 1,800 | 900 | 2,000 | 2.00× | 0.90× |');
    expect(table[3]).toBe('| 64 B echo, 64 × 16 | 300,000 | 400,000 ⚑ | n/a | 0.75× ⚑ | n/a |');
    expect(ratioTable(CELLS, summaries, [SERVERS[0]!])).toEqual([]); // no baseline: no ratios
  });

  it('open-loop table: p50 / p99 per server, and a server that could not carry the rate says so', () => {
    const summaries = { 'open-1ms': { pool: summarize([run(900, { p50: 1.2, p99: 2.5 })]), inline: summarize([run(600, { p50: 80, p99: 300 })]) } };
    const t = openTable(CELLS.filter((c) => c.id === 'open-1ms'), summaries, SERVERS.slice(0, 2), { 'open-1ms': 900 });
    expect(t[2]).toBe('| open loop, ~1 ms | 900 | 1.200 / 2.500 | 80.000 / 300.000 (carried 600 req/s) |');
  });

  it('cold-start memory per used connection, and generator agreement', () => {
    expect(perConnectionKiB({ connections: 10_000, opened: 10_000, failed: 0, rssBeforeKiB: 70_000, rssAfterKiB: 120_000 })).toBe(5);
    expect(perConnectionKiB({ connections: 10, opened: 0, failed: 10, rssBeforeKiB: 1, rssAfterKiB: 2 })).toBeNull();
    expect(agreement({ loadgenRps: [1000, 500, 1020], shoalBenchRps: [990, 450, 970], loadgenCpu: [], shoalBenchCpu: [] })).toEqual({
      loadgen: 1000, shoalBench: 970, ratio: 0.97, pairedRatio: 0.951, // pairs 0.99, 0.90, 0.951
    });
    expect(agreement({ loadgenRps: [], shoalBenchRps: [5], loadgenCpu: [], shoalBenchCpu: [] }).ratio).toBeNull();
  });

  it('heat map: one coloured cell per ratio, dashed and flagged when marked', () => {
    expect(ratioColor(1)).toBe('#f7f1c8');
    expect(ratioColor(2)).toBe('#1a9850');
    expect(ratioColor(4)).toBe('#1a9850'); // clamped at the 2-core limit
    expect(ratioColor(0.5)).toBe('#d73027');
    const svg = heatMap('t', ['a', 'b'], ['x', 'y'], [
      [{ value: 2, marked: false }, { value: 1, marked: true }],
      [{ value: null, marked: false }, { value: 0.5, marked: false, noisy: true }],
    ]);
    expect(svg).toContain('0.50× ≈');
    expect(svg.match(/fill-opacity/g)).toHaveLength(1);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('fill="#1a9850"');
    expect(svg).toContain('1.00× ⚑');
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(1);
    expect(svg).toContain('n/a');
    expect(svg).not.toContain('NaN');
  });

  it('servers needing more open files than the hard limit start through prlimit', () => {
    const limits = openFileLimits();
    expect(limits).not.toBeNull();
    expect(withOpenFiles(undefined, ['x.js'])).toEqual({ file: process.execPath, argv: ['x.js'] });
    expect(withOpenFiles(Math.min(64, limits!.hard), ['x.js']).file).toBe(process.execPath);
    const raised = withOpenFiles(limits!.hard + 1, ['x.js']);
    expect(raised.argv).toContain(process.execPath);
    expect(raised.argv.at(-1)).toBe('x.js');
  });
});
