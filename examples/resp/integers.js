// Redis's integers: what string2ll() accepts, a signed 64-bit decimal with no sign '+',
// no leading zeros, no spaces. Returns a number when it is a safe integer, a bigint
// beyond that, null when the bytes are not an integer in range.
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export function parseInteger(bytes) {
  const n = bytes.length;
  if (n === 0 || n > 20) return null;
  let i = 0;
  const negative = bytes[0] === 0x2d;
  if (negative) i++;
  if (i === n) return null;
  if (bytes[i] === 0x30 && n > i + 1) return null; // leading zero
  if (negative && bytes[i] === 0x30) return null; // "-0"
  let value = 0;
  for (let j = i; j < n; j++) {
    const d = bytes[j] - 0x30;
    if (d < 0 || d > 9) return null;
    value = value * 10 + d;
  }
  if (n - i <= 15) return negative ? -value : value;
  // Long enough to lose precision as a double: redo exactly.
  const big = BigInt(bytes.toString('latin1'));
  if (big < INT64_MIN || big > INT64_MAX) return null;
  return Number.isSafeInteger(Number(big)) ? Number(big) : big;
}
