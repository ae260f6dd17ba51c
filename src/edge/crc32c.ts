/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * PROXY protocol v2 TLV PP2_TYPE_CRC32C. node:zlib has only CRC-32 (IEEE), so
 * here is the table-driven byte-at-a-time form: headers are a few hundred bytes.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `bytes` (an unsigned 32-bit integer). crc32c("123456789") = 0xe3069283. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
