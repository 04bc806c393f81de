/* frame — wire protocol v1 codec and incremental decoder.
 *
 * Every frame is a 36-byte little-endian header and `len` payload bytes:
 *
 *   off size field    meaning
 *   0   2    magic    'M' 'I' (0x4D 0x49)
 *   2   1    version  1
 *   3   1    type     enum mi_type
 *   4   2    flags    MI_F_*
 *   6   2    topic    topic id, 0 = default
 *   8   4    len      payload length
 *   12  4    pcrc     CRC-32 (zlib crc32) of the payload
 *   16  8    seq      DATA: device seq; ACK: highest durable seq; WELCOME: last durable seq
 *   24  8    ts_ns    device timestamp (0: the server stamps it)
 *   32  4    hcrc     CRC-32 of header bytes 0..31
 *
 * The full protocol (handshake, acks, NDJSON) is in docs/PROTOCOL.md.
 */
#ifndef MI_FRAME_H
#define MI_FRAME_H
#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"

#define MI_MAGIC0 0x4D
#define MI_MAGIC1 0x49
#define MI_VERSION 1
#define MI_HDR_LEN 36
#define MI_MAX_FRAME_DEFAULT (64u << 10)
#define MI_MAX_FRAME_CAP (16u << 20)   /* hard cap: a len above it breaks framing */
#define MI_DEVID_MAX 64
#define MI_NONCE_LEN 16
#define MI_FPR_LEN 32
#define MI_PROOF_LEN 32

enum mi_type {
	MI_HELLO = 1,
	MI_CHALLENGE = 2,
	MI_AUTH = 3,
	MI_WELCOME = 4,
	MI_DATA = 5,
	MI_ACK = 6,
	MI_NACK = 7,
	MI_PING = 8,
	MI_PONG = 9,
	MI_BYE = 10,
	MI_TYPE_MAX
};

enum mi_flag {
	MI_F_FPR = 1 << 0,    /* HELLO carries a fingerprint */
	MI_F_MAC = 1 << 1,    /* DATA ends with a 16-byte MAC */
	MI_F_SEALED = 1 << 2, /* DATA payload sealed (AEAD) */
};

enum mi_nack {
	MI_NACK_CRC = 1,
	MI_NACK_TOO_LARGE = 2,
	MI_NACK_SEQ = 3,
	MI_NACK_TOPIC = 4,
	MI_NACK_AUTH_FAILED = 5,
	MI_NACK_NOT_AUTH = 6,
	MI_NACK_OVERLOADED = 7,
	MI_NACK_MALFORMED = 8,
	MI_NACK_MAX
};

/* Framing errors: the byte stream cannot be trusted past them. */
enum mi_frame_err {
	MI_EMAGIC = 1000,
	MI_EVERSION,
	MI_EHCRC,
	MI_ECAP,      /* len above MI_MAX_FRAME_CAP */
	MI_ENOBUF,    /* pool could not supply a buffer */
	MI_EFRAME_MAX
};

struct mi_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint16_t topic;
	uint32_t len;
	uint32_t pcrc;
	uint64_t seq;
	uint64_t ts_ns;
	uint32_t hcrc;
};

/* Little-endian accessors; the protocol is LE on every host. */
static inline uint16_t mi_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t mi_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t mi_get64(const uint8_t *p) { return mi_get32(p) | (uint64_t)mi_get32(p + 4) << 32; }
static inline void mi_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mi_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void mi_put64(uint8_t *p, uint64_t v) { mi_put32(p, (uint32_t)v); mi_put32(p + 4, (uint32_t)(v >> 32)); }

/* CRC-32 as zlib's crc32 (common/crc32.c). */
uint32_t mi_crc32(const void *buf, size_t len);
/* Continues a CRC-32 over more bytes. */
uint32_t mi_crc32_update(uint32_t crc, const void *buf, size_t len);
/* The same without carry-less multiplication: what mi_crc32_update uses on
 * a CPU without PCLMULQDQ (and the tests, to check both paths). */
uint32_t mi_crc32_update_portable(uint32_t crc, const void *buf, size_t len);

/* Writes h into out (pcrc as given) and computes hcrc; h->hcrc is ignored. */
void mi_hdr_encode(const struct mi_hdr *h, uint8_t out[MI_HDR_LEN]);
/* Parses and checks magic, version, hcrc and len <= MI_MAX_FRAME_CAP.
 * Returns 0 or -MI_E*; *ret is written only on success. */
int mi_hdr_decode(const uint8_t in[MI_HDR_LEN], struct mi_hdr *ret);

/* Per-frame MAC (DATA flags bit 1): the last MI_MAC_LEN bytes of the payload
 * are keyed BLAKE2b-128 (libsodium crypto_generichash, outlen 16, key = the
 * 32-byte session key) over header bytes 0..11 and 16..31 (all but pcrc and
 * hcrc) followed by the payload before the MAC.  h->len and h->pcrc count the
 * MAC as payload; data is the payload before the MAC (dlen = h->len - 16). */
#define MI_MAC_LEN 16
#define MI_MAC_KEY_LEN 32
/* Header bytes 0..11 || 16..31 (all but pcrc and hcrc): what the per-frame
 * MAC and the seal's associated data cover. */
#define MI_AAD_LEN 28
void mi_hdr_aad(const struct mi_hdr *h, uint8_t out[MI_AAD_LEN]);
void mi_frame_mac(uint8_t out[MI_MAC_LEN], const uint8_t key[MI_MAC_KEY_LEN], const struct mi_hdr *h,
		  const void *data, size_t dlen);

/* Builds a whole frame (header + payload, pcrc computed) into out.
 * Returns its length, or 0 when cap is too small. */
size_t mi_frame_build(uint8_t *out, size_t cap, uint8_t type, uint16_t flags, uint16_t topic,
		      uint64_t seq, uint64_t ts_ns, const void *payload, uint32_t len);

const char *mi_type_name(unsigned type);
const char *mi_nack_name(unsigned code);
const char *mi_frame_strerror(int err);   /* err as returned (negative) */

/* Device ids: 1..64 bytes of [A-Za-z0-9._:-]. */
int mi_devid_valid(const uint8_t *id, size_t len);

/* ---- incremental decoder ----
 *
 * Accepts any split of the byte stream across calls.  A frame wholly inside
 * the input is returned in place (no copy); one split across reads is
 * gathered into a pool buffer of exactly its size, which the decoder owns
 * until the next call.  A len above max_len but within the hard cap is not a
 * framing error: the payload is skipped and MI_DEC_TOO_LARGE returned so the
 * caller can NACK it and go on.  The state is ~64 bytes: idle connections
 * hold no buffer.
 */
enum mi_dec_status {
	MI_DEC_NEED = 0,       /* consumed all input, frame incomplete */
	MI_DEC_FRAME = 1,      /* *out holds a frame */
	MI_DEC_TOO_LARGE = 2,  /* header in *out; payload skipped */
};

struct mi_frame {
	struct mi_hdr h;
	const uint8_t *payload;   /* h.len bytes */
	int pcrc_ok;
	uint32_t dcrc;            /* CRC of the payload but its last 16 bytes when
				   * flags bit 1 or 2 and len >= 16, else pcrc */
};

struct mi_decoder {
	pool_t *pool;
	uint32_t max_len;
	uint32_t hdr_have;    /* header bytes gathered */
	uint32_t pay_have;    /* payload bytes gathered into buf */
	uint32_t skip;        /* payload bytes still to discard */
	uint8_t *buf;         /* payload being gathered, or last returned */
	uint32_t buf_len;     /* size requested for buf */
	uint8_t hdr_done;
	uint8_t hdr[MI_HDR_LEN];
	struct mi_hdr h;
};

void mi_dec_init(struct mi_decoder *d, pool_t *pool, uint32_t max_len);
/* Frees any held buffer; the decoder can be reused after mi_dec_init. */
void mi_dec_reset(struct mi_decoder *d);
/* Consumes up to len bytes of in (count in *consumed, always written).
 * Returns enum mi_dec_status, or -MI_E* on a framing error. */
int mi_dec_next(struct mi_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
		struct mi_frame *out);
/* Bytes of a partial frame held (0 when idle). */
static inline int mi_dec_idle(const struct mi_decoder *d)
{
	return d->hdr_have == 0 && d->skip == 0;
}
#endif
