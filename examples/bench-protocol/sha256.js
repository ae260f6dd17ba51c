// SHA-256 in plain JavaScript, allocation-free on the hash chain.
//
// Why not node:crypto? On Node 20 (OpenSSL 3), createHash()/digest() per step does
// not scale across worker threads of one process: two threads hashing 32-byte
// inputs each ran at about half speed (2.5 ms vs 1.25 ms per 1100 steps), while
// two processes scale fully. Pure JS work does scale across threads, so the
// bench protocol's CPU cost is computed here; tests check it against node:crypto.
//
// The chain d(i+1) = SHA-256(d(i)) hashes exactly 32 bytes: one padded block whose
// words are the previous state, so it never leaves 32-bit integers.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

const W = new Int32Array(64);
const H = new Int32Array(8);

/** One compression of W[0..15] into H. */
function compress() {
  for (let t = 16; t < 64; t++) {
    const x = W[t - 15];
    const y = W[t - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
  }
  // Eight rounds per iteration with the roles of a..h rotated instead of shuffling eight
  // variables each round (how C implementations do it). Fewer live values matters here:
  // a worker thread's typed arrays sit above 4 GiB, where V8 cannot fold their addresses
  // into 32-bit immediates and spends a register on each; the one-round loop spilled and
  // ran 10% slower in a worker than on the main thread (1.10 vs 1.00 ms at K = 3280).
  // This form runs 0.93 ms on the main thread and 0.91 ms in a worker.
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (let t = 0; t < 64; t += 8) {
    {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + W[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      d = (d + t1) | 0;
      h = (t1 + S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    }
    {
      const S1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7));
      const t1 = (g + S1 + ((d & e) ^ (~d & f)) + K[t + 1] + W[t + 1]) | 0;
      const S0 = ((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10));
      c = (c + t1) | 0;
      g = (t1 + S0 + ((h & a) ^ (h & b) ^ (a & b))) | 0;
    }
    {
      const S1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7));
      const t1 = (f + S1 + ((c & d) ^ (~c & e)) + K[t + 2] + W[t + 2]) | 0;
      const S0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10));
      b = (b + t1) | 0;
      f = (t1 + S0 + ((g & h) ^ (g & a) ^ (h & a))) | 0;
    }
    {
      const S1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7));
      const t1 = (e + S1 + ((b & c) ^ (~b & d)) + K[t + 3] + W[t + 3]) | 0;
      const S0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10));
      a = (a + t1) | 0;
      e = (t1 + S0 + ((f & g) ^ (f & h) ^ (g & h))) | 0;
    }
    {
      const S1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7));
      const t1 = (d + S1 + ((a & b) ^ (~a & c)) + K[t + 4] + W[t + 4]) | 0;
      const S0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10));
      h = (h + t1) | 0;
      d = (t1 + S0 + ((e & f) ^ (e & g) ^ (f & g))) | 0;
    }
    {
      const S1 = ((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7));
      const t1 = (c + S1 + ((h & a) ^ (~h & b)) + K[t + 5] + W[t + 5]) | 0;
      const S0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10));
      g = (g + t1) | 0;
      c = (t1 + S0 + ((d & e) ^ (d & f) ^ (e & f))) | 0;
    }
    {
      const S1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7));
      const t1 = (b + S1 + ((g & h) ^ (~g & a)) + K[t + 6] + W[t + 6]) | 0;
      const S0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10));
      f = (f + t1) | 0;
      b = (t1 + S0 + ((c & d) ^ (c & e) ^ (d & e))) | 0;
    }
    {
      const S1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7));
      const t1 = (a + S1 + ((f & g) ^ (~f & h)) + K[t + 7] + W[t + 7]) | 0;
      const S0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10));
      e = (e + t1) | 0;
      a = (t1 + S0 + ((b & c) ^ (b & d) ^ (c & d))) | 0;
    }
  }
  H[0] = (H[0] + a) | 0;
  H[1] = (H[1] + b) | 0;
  H[2] = (H[2] + c) | 0;
  H[3] = (H[3] + d) | 0;
  H[4] = (H[4] + e) | 0;
  H[5] = (H[5] + f) | 0;
  H[6] = (H[6] + g) | 0;
  H[7] = (H[7] + h) | 0;
}

/** H = SHA-256 state after hashing `bytes` (any length). */
function hashInto(bytes) {
  H.set(IV);
  const n = bytes.length;
  const blocks = Math.floor((n + 9 + 63) / 64);
  for (let blk = 0; blk < blocks; blk++) {
    for (let w = 0; w < 16; w++) {
      let v = 0;
      for (let j = 0; j < 4; j++) {
        const i = blk * 64 + w * 4 + j;
        const byte = i < n ? bytes[i] : i === n ? 0x80 : 0;
        v = (v << 8) | byte;
      }
      W[w] = v;
    }
    if (blk === blocks - 1) {
      // Message length in bits, big-endian, in the last 8 bytes (fits 53 bits).
      const bits = n * 8;
      W[14] = Math.floor(bits / 0x100000000) | 0;
      W[15] = bits | 0;
    }
    compress();
  }
}

/** H = SHA-256(H as 32 big-endian bytes): one block, no bytes touched. */
function rehash() {
  for (let i = 0; i < 8; i++) W[i] = H[i];
  W[8] = 0x80000000 | 0;
  W[9] = W[10] = W[11] = W[12] = W[13] = W[14] = 0;
  W[15] = 256;
  H.set(IV);
  compress();
}

function digestBytes() {
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 8; i++) out.writeInt32BE(H[i], i * 4);
  return out;
}

/** SHA-256 of `bytes`. */
export function sha256(bytes) {
  hashInto(bytes);
  return digestBytes();
}

/** dK where d1 = SHA-256(payload) and d(i+1) = SHA-256(d(i)); k >= 1. */
export function sha256Chain(payload, k) {
  hashInto(payload);
  for (let i = 1; i < k; i++) rehash();
  return digestBytes();
}
