#include "common/frame.h"

#include <sodium.h>
#include <string.h>


/* bytes 0..31; the MAC and seal cover them without the CRCs */
static void hdr_pack(const struct mi_hdr *h, uint8_t out[32])
{
	out[0] = MI_MAGIC0;
	out[1] = MI_MAGIC1;
	out[2] = h->version ? h->version : MI_VERSION;
	out[3] = h->type;
	mi_put16(out + 4, h->flags);
	mi_put16(out + 6, h->topic);
	mi_put32(out + 8, h->len);
	mi_put32(out + 12, h->pcrc);
	mi_put64(out + 16, h->seq);
	mi_put64(out + 24, h->ts_ns);
}

void mi_hdr_encode(const struct mi_hdr *h, uint8_t out[MI_HDR_LEN])
{
	hdr_pack(h, out);
	mi_put32(out + 32, mi_crc32(out, 32));
}

void mi_hdr_aad(const struct mi_hdr *h, uint8_t out[MI_AAD_LEN])
{
	uint8_t b[32];
	hdr_pack(h, b);
	memcpy(out, b, 12);
	memcpy(out + 12, b + 16, 16);
}

void mi_frame_mac(uint8_t out[MI_MAC_LEN], const uint8_t key[MI_MAC_KEY_LEN], const struct mi_hdr *h,
		  const void *data, size_t dlen)
{
	uint8_t ad[MI_AAD_LEN];
	crypto_generichash_state st;
	mi_hdr_aad(h, ad);
	crypto_generichash_init(&st, key, MI_MAC_KEY_LEN, MI_MAC_LEN);
	crypto_generichash_update(&st, ad, sizeof(ad));
	crypto_generichash_update(&st, data, dlen);
	crypto_generichash_final(&st, out, MI_MAC_LEN);
	sodium_memzero(&st, sizeof(st));
}

int mi_hdr_decode(const uint8_t in[MI_HDR_LEN], struct mi_hdr *ret)
{
	if (in[0] != MI_MAGIC0 || in[1] != MI_MAGIC1)
		return -MI_EMAGIC;
	if (in[2] != MI_VERSION)
		return -MI_EVERSION;
	uint32_t hcrc = mi_get32(in + 32);
	if (hcrc != mi_crc32(in, 32))
		return -MI_EHCRC;
	uint32_t len = mi_get32(in + 8);
	if (len > MI_MAX_FRAME_CAP)
		return -MI_ECAP;
	ret->version = in[2];
	ret->type = in[3];
	ret->flags = mi_get16(in + 4);
	ret->topic = mi_get16(in + 6);
	ret->len = len;
	ret->pcrc = mi_get32(in + 12);
	ret->seq = mi_get64(in + 16);
	ret->ts_ns = mi_get64(in + 24);
	ret->hcrc = hcrc;
	return 0;
}

size_t mi_frame_build(uint8_t *out, size_t cap, uint8_t type, uint16_t flags, uint16_t topic,
		      uint64_t seq, uint64_t ts_ns, const void *payload, uint32_t len)
{
	if (cap < MI_HDR_LEN || cap - MI_HDR_LEN < len)
		return 0;
	struct mi_hdr h = {
		.version = MI_VERSION, .type = type, .flags = flags, .topic = topic,
		.len = len, .pcrc = mi_crc32(payload, len), .seq = seq, .ts_ns = ts_ns,
	};
	if (len)
		memmove(out + MI_HDR_LEN, payload, len);
	mi_hdr_encode(&h, out);
	return MI_HDR_LEN + (size_t)len;
}

const char *mi_type_name(unsigned type)
{
	static const char *const names[MI_TYPE_MAX] = {
		[MI_HELLO] = "HELLO", [MI_CHALLENGE] = "CHALLENGE", [MI_AUTH] = "AUTH",
		[MI_WELCOME] = "WELCOME", [MI_DATA] = "DATA", [MI_ACK] = "ACK",
		[MI_NACK] = "NACK", [MI_PING] = "PING", [MI_PONG] = "PONG", [MI_BYE] = "BYE",
	};
	return type < MI_TYPE_MAX && names[type] ? names[type] : "UNKNOWN";
}

const char *mi_nack_name(unsigned code)
{
	static const char *const names[MI_NACK_MAX] = {
		[MI_NACK_CRC] = "bad checksum", [MI_NACK_TOO_LARGE] = "too large",
		[MI_NACK_SEQ] = "bad sequence", [MI_NACK_TOPIC] = "topic not allowed",
		[MI_NACK_AUTH_FAILED] = "authentication failed",
		[MI_NACK_NOT_AUTH] = "not authenticated", [MI_NACK_OVERLOADED] = "overloaded",
		[MI_NACK_MALFORMED] = "malformed",
	};
	return code < MI_NACK_MAX && names[code] ? names[code] : "unknown";
}

const char *mi_frame_strerror(int err)
{
	switch (-err) {
	case MI_EMAGIC: return "bad magic";
	case MI_EVERSION: return "unsupported version";
	case MI_EHCRC: return "bad header checksum";
	case MI_ECAP: return "length above the 16 MiB hard cap";
	case MI_ENOBUF: return "out of frame buffers";
	default: return "unknown frame error";
	}
}

int mi_devid_valid(const uint8_t *id, size_t len)
{
	if (len < 1 || len > MI_DEVID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

void mi_dec_init(struct mi_decoder *d, pool_t *pool, uint32_t max_len)
{
	memset(d, 0, sizeof(*d));
	d->pool = pool;
	d->max_len = max_len;
}

static void drop_buf(struct mi_decoder *d)
{
	if (d->buf) {
		pool_put(d->pool, d->buf, d->buf_len);
		d->buf = NULL;
		d->buf_len = 0;
	}
}

void mi_dec_reset(struct mi_decoder *d)
{
	drop_buf(d);
	d->hdr_have = d->pay_have = d->skip = 0;
	d->hdr_done = 0;
}

static int emit(struct mi_decoder *d, const uint8_t *payload, struct mi_frame *out)
{
	out->h = d->h;
	out->payload = payload;
	/* a MAC'd or sealed frame's data CRC on the way (the record's CRC) */
	if ((d->h.flags & (MI_F_MAC | MI_F_SEALED)) && d->h.len >= MI_MAC_LEN) {
		out->dcrc = mi_crc32(payload, d->h.len - MI_MAC_LEN);
		out->pcrc_ok = mi_crc32_update(out->dcrc, payload + d->h.len - MI_MAC_LEN, MI_MAC_LEN) == d->h.pcrc;
	} else {
		out->dcrc = d->h.pcrc;
		out->pcrc_ok = mi_crc32(payload, d->h.len) == d->h.pcrc;
	}
	d->hdr_have = 0;
	d->hdr_done = 0;
	d->pay_have = 0;
	return MI_DEC_FRAME;
}

int mi_dec_next(struct mi_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
		struct mi_frame *out)
{
	size_t off = 0;
	*consumed = 0;
	/* the buffer of the frame returned last time is no longer the caller's */
	if (!d->hdr_done)
		drop_buf(d);

	if (d->skip) {
		size_t n = len < d->skip ? len : d->skip;
		d->skip -= (uint32_t)n;
		if (d->skip || n == len) {
			*consumed = n;
			return MI_DEC_NEED;
		}
		/* the skipped payload ends inside the input: go on with the rest,
		 * so NEED keeps meaning "consumed everything" */
		int r = mi_dec_next(d, in + n, len - n, consumed, out);
		*consumed += n;
		return r;
	}
	if (!d->hdr_done) {
		if (d->hdr_have == 0 && len >= MI_HDR_LEN) {
			/* fast path: header in place */
			int r = mi_hdr_decode(in, &d->h);
			if (r < 0)
				return r;
			off = MI_HDR_LEN;
		} else {
			size_t n = MI_HDR_LEN - d->hdr_have;
			if (n > len)
				n = len;
			memcpy(d->hdr + d->hdr_have, in, n);
			d->hdr_have += (uint32_t)n;
			off = n;
			/* fail early on a bad magic so a garbage stream is cut at once */
			if ((d->hdr_have >= 1 && d->hdr[0] != MI_MAGIC0) ||
			    (d->hdr_have >= 2 && d->hdr[1] != MI_MAGIC1))
				return *consumed = off, -MI_EMAGIC;
			if (d->hdr_have < MI_HDR_LEN) {
				*consumed = off;
				return MI_DEC_NEED;
			}
			int r = mi_hdr_decode(d->hdr, &d->h);
			if (r < 0)
				return *consumed = off, r;
		}
		d->hdr_have = MI_HDR_LEN;
		d->hdr_done = 1;
		d->pay_have = 0;
		if (d->h.len > d->max_len) {
			size_t avail = len - off;
			size_t n = avail < d->h.len ? avail : d->h.len;
			d->skip = d->h.len - (uint32_t)n;
			out->h = d->h;
			out->payload = NULL;
			out->pcrc_ok = 0;
			d->hdr_have = 0;
			d->hdr_done = 0;
			*consumed = off + n;
			return MI_DEC_TOO_LARGE;
		}
		if (len - off >= d->h.len) {
			*consumed = off + d->h.len;
			return emit(d, in + off, out);
		}
		d->buf = pool_get(d->pool, d->h.len);
		if (!d->buf)
			return *consumed = off, -MI_ENOBUF;
		d->buf_len = d->h.len;
	}
	size_t need = d->h.len - d->pay_have;
	size_t n = len - off < need ? len - off : need;
	memcpy(d->buf + d->pay_have, in + off, n);
	d->pay_have += (uint32_t)n;
	*consumed = off + n;
	if (d->pay_have < d->h.len)
		return MI_DEC_NEED;
	return emit(d, d->buf, out);
}
