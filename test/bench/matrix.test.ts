import { describe, expect, it } from 'vitest';
import { checkTargets } from '../../dist/bench/scenarios.js';
import type { Cell } from '../../dist/bench/scenarios.js';
import { barPanels, latencyPanels } from '../../dist/bench/svg.js';

const cell = (rps: number, extra: Partial<Cell> = {}): Cell => ({
  runs: 3, rps, rpsMin: rps, rpsMax: rps, p50: 1, p99: 2, p99_9: 3, peakRssMiB: 100, cpu: 100, genCpu: 10,
  genSaturated: false, errors: 0, serverWarnings: 0, otherCpu: 0, ...extra,
});

describe('matrix targets and charts', () => {
  it('checks issue 3 targets as ratios within one run', () => {
    const cells = {
      cpu1ms: { inline: cell(900), pool: cell(1800, { peakRssMiB: 90 }), cluster: cell(1700, { peakRssMiB: 160 }) },
      cpu100us: { inline: cell(9000), pool: cell(16_000), cluster: cell(17_000) },
      single: { inline: cell(900), pool: cell(1000) },
      echo64: { inline: cell(800_000), pool: cell(600_000) },
      rate20k: { inline: cell(20_000, { p99: 1 }), pool: cell(20_000, { p99: 1.5 }) },
    };
    const t = Object.fromEntries(checkTargets(cells, { pool: { perConnKiB: 4.2 } }, 2).map((x) => [x.id, x]));
    expect(t['cpu1ms-inline']).toMatchObject({ met: true, measured: '2.00×' });
    expect(t['cpu1ms-cluster']!.met).toBe(true);
    expect(t['cpu1ms-memory']!.met).toBe(true);
    expect(t['cpu100us-inline']!.met).toBe(false); // 1.78×
    expect(t['cpu100us-cluster']!.met).toBe(false); // 0.94×
    expect(t['single-inline']!.met).toBe(false);
    expect(t['echo64-inline']!.met).toBe(true);
    expect(t['rate20k-p99']!.met).toBe(true);
    expect(t['idle-pool']!.met).toBe(true);
    expect(t['idle-inline']!.met).toBeNull(); // not measured
  });

  it('draws one bar per measured value, scaled per panel', () => {
    const svg = barPanels('t', [{ label: 'a', color: '#111111' }, { label: 'b', color: '#222222' }], [
      { title: 'p', values: [10, 20] },
      { title: 'q', values: [5, null] },
    ]);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    const bars = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#(111111|222222)"/g)].map((m) => Number(m[1])).slice(2); // after the two legend swatches
    expect(bars).toHaveLength(3);
    expect(bars[1]).toBeCloseTo(bars[0]! * 2, 0); // same panel: 20 is twice 10
    expect(bars[2]).toBeCloseTo(bars[1]!, 0); // own panel: its max is full height
    expect(svg).toContain('n/a');
    const lat = latencyPanels('l', ['x'], [{ label: 'p50', color: '#333333' }], [{ title: 'p', values: [[0.5]] }]);
    expect(lat).toContain('fill="#333333"');
    expect(lat).not.toContain('NaN');
  });
});
