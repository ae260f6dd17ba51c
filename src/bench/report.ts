/** Text output laid out like autocannon's: a latency table, a req/s + bytes/s table, totals. */
import type { BenchProgress, BenchResult } from './run.js';

/** A box-drawn table; the first row is the header. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (l: string, m: string, r: string): string => l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  const row = (cells: string[]): string => '│' + cells.map((c, i) => ` ${c.padEnd(widths[i]!)} `).join('│') + '│';
  const out = [line('┌', '┬', '┐'), row(rows[0]!), line('├', '┼', '┤')];
  rows.slice(1).forEach((r, i) => {
    if (i > 0) out.push(line('├', '┼', '┤'));
    out.push(row(r));
  });
  out.push(line('└', '┴', '┘'));
  return out.join('\n');
}

export function formatMs(ms: number): string {
  return `${ms.toFixed(3)} ms`;
}

/** Decimal units, as autocannon prints bytes. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${units[i]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  return String(Math.round(n));
}

const num = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(2));

export function describeLoad(r: Pick<BenchResult, 'protocol' | 'iterations' | 'size' | 'framing'>): string {
  if (r.protocol === 'bench') return `bench protocol, K=${r.iterations}${r.iterations === 0 ? ' (echo)' : ''}, ${r.size} B payload`;
  return `echo over ${r.framing} framing, ${r.size} B payload`;
}

export function header(r: Pick<BenchResult, 'target' | 'protocol' | 'iterations' | 'size' | 'framing' | 'connections' | 'pipelining' | 'rate' | 'amount' | 'warmup'> & { duration: number; threads: number }): string {
  const what = r.amount > 0 ? `${r.amount} requests` : `${r.duration}s test`;
  const lines = [`Running ${what} @ ${r.target} (${describeLoad(r)})`];
  let load = `${r.connections} connections with ${r.pipelining} pipelining factor`;
  if (r.rate > 0) load += `, open loop at ${r.rate} req/s`;
  if (r.threads > 1) load += `, ${r.threads} generator threads`;
  if (r.warmup > 0) load += `, ${r.warmup}s warm-up`;
  lines.push(load);
  return lines.join('\n') + '\n';
}

export function renderResult(r: BenchResult): string {
  const l = r.latency;
  const lat = table([
    ['Stat', '2.5%', '50%', '97.5%', '99%', '99.9%', 'Avg', 'Stdev', 'Max'],
    ['Latency', ...[l.p2_5, l.p50, l.p97_5, l.p99, l.p99_9, l.average, l.stdev, l.max].map(formatMs)],
  ]);
  const q = r.requests;
  const b = r.throughput;
  const rates = table([
    ['Stat', '1%', '2.5%', '50%', '97.5%', 'Avg', 'Stdev', 'Min'],
    ['Req/Sec', ...[q.p1, q.p2_5, q.p50, q.p97_5, q.average, q.stdev, q.min].map(num)],
    ['Bytes/Sec', ...[b.p1, b.p2_5, b.p50, b.p97_5, b.average, b.stdev, b.min].map(formatBytes)],
  ]);
  const out = [lat, rates, '', 'Req/Bytes counts sampled once per second.', `# of samples: ${q.samples}`, ''];
  out.push(
    `${formatCount(q.total)} requests in ${r.duration}s, ${formatBytes(b.total)} read` +
      ` (${formatCount(q.perSecond)} req/s; every reply verified; latency p50 ${formatMs(l.p50)}, p99 ${formatMs(l.p99)})`,
  );
  if (q.orderlyCloses > 0) {
    out.push(`${formatCount(q.resent)} requests re-sent after ${formatCount(q.orderlyCloses)} orderly closes by the server (--reconnect; their replies verified too)`);
  }
  const e = r.errors;
  if (e.total > 0) {
    const parts = [`${e.mismatches} mismatched replies`, `${e.timeouts} timeouts`, `${e.resets} resets`, `${e.connectErrors} connect errors`];
    const codes = Object.entries(e.codes).map(([k, v]) => `${k}: ${v}`).join(', ');
    out.push(`${e.total} errors (${parts.join(', ')}; ${e.lost} requests lost with their connection)${codes ? ` [${codes}]` : ''}`);
  }
  const g = r.generator;
  out.push(
    `generator: ${g.threads} thread${g.threads > 1 ? 's' : ''}, CPU ${g.cpu}% of one core (${g.cores} cores), ` +
      `event loop busy ${g.elu.map((x) => `${Math.round(x * 100)}%`).join(' / ')}`,
  );
  return out.join('\n') + '\n';
}

/** One progress line, redrawn in place on a TTY. */
export function renderProgress(p: BenchProgress, width = 30): string {
  let frac: number;
  let where: string;
  if (p.planned !== null) {
    frac = Math.min(1, p.elapsed / Math.max(1, p.planned));
    where = `${(p.elapsed / 1000).toFixed(1)}s/${(p.planned / 1000).toFixed(1)}s`;
  } else {
    frac = Math.min(1, p.replies / Math.max(1, p.amount));
    where = `${formatCount(p.replies)}/${formatCount(p.amount)}`;
  }
  const done = Math.round(frac * width);
  const bar = '='.repeat(done) + ' '.repeat(width - done);
  const errs = p.errors > 0 ? `  ${p.errors} errors` : '';
  return `[${bar}] ${where}  ${formatCount(p.rate)} req/s${p.warmingUp ? ' (warm-up)' : ''}${errs}`;
}
