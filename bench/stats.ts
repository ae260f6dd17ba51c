/** Small pure helpers the benchmark runners share. */

export const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** a / b, or null when either is missing or b is not positive. */
export const ratio = (a: number | undefined, b: number | undefined): number | null =>
  a !== undefined && b !== undefined && b > 0 ? a / b : null;
