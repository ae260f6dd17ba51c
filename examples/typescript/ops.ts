// What the handler imports: plain TypeScript modules of the project (loaded through tsx too).

export type Request = { op: 'add'; numbers: number[] } | { op: 'shout'; text: string };
export type Response = { sum: number } | { text: string; worker: number; connection: number };

export function add(numbers: readonly number[]): number {
  return numbers.reduce((a, b) => a + b, 0);
}

export function shout(text: string): string {
  return `${text.toUpperCase()}!`;
}
