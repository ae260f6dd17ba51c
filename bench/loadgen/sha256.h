/* SHA-256 (FIPS 180-4), small and dependency-free: the load generator checks the bench
 * protocol's K > 0 replies with it, so it needs no OpenSSL. */
#ifndef LOADGEN_SHA256_H
#define LOADGEN_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* out = SHA-256(data[0..len)). */
void sha256(const uint8_t *data, size_t len, uint8_t out[32]);

/* The bench protocol's chain: d1 = SHA-256(payload), d(i+1) = SHA-256(d(i)); out = dK (K >= 1). */
void sha256_chain(const uint8_t *payload, size_t len, uint32_t k, uint8_t out[32]);

#endif
