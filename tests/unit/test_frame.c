/* test_frame — wire protocol v1 header codec, frame builder, device ids and
 * the incremental decoder (common/frame.h).
 *
 * The decoder is checked against an oracle built with the stream: the
 * whole-buffer feed must give exactly the frames put in, and every other
 * split of the same bytes (every split point of a small stream, every pair
 * of split points, byte by byte, thousands of seeded random splits of a
 * large one) must give exactly what the whole-buffer feed gave.  Each chunk
 * is handed to the decoder in its own exact-size heap copy that is freed
 * after use, so ASan catches a decoder that reads past its input or keeps a
 * pointer into it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <zlib.h>

#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/pool.h"

/* ---- deterministic PRNG (xorshift64*) ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s ? s : 0x9e3779b97f4a7c15ull;
}

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint32_t rng_range(uint32_t lo, uint32_t hi)   /* inclusive */
{
	return lo + (uint32_t)(rng_next() % ((uint64_t)hi - lo + 1));
}

/* ---- building streams, with the expected frames as the oracle ---- */

static uint8_t pattern_byte(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 131u + i * 7u + (i >> 8));
}

struct ev {
	int status;              /* MI_DEC_FRAME, MI_DEC_TOO_LARGE or -MI_E* */
	struct mi_hdr h;
	int pcrc_ok;
	uint8_t *payload;        /* own copy, h.len bytes (MI_DEC_FRAME only) */
};

struct evlist {
	struct ev *v;
	size_t n, cap;
};

static void evlist_push(struct evlist *l, int status, const struct mi_frame *f)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		assert_non_null(l->v);
	}
	struct ev *e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->status = status;
	if (status < 0)
		return;
	e->h = f->h;
	e->pcrc_ok = f->pcrc_ok;
	if (status == MI_DEC_FRAME) {
		e->payload = malloc(f->h.len ? f->h.len : 1);
		assert_non_null(e->payload);
		if (f->h.len)
			memcpy(e->payload, f->payload, f->h.len);
	}
}

static void evlist_free(struct evlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].payload);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct spec {
	uint8_t type;
	uint32_t len;
	int corrupt;             /* flip a payload byte: pcrc must not match */
};

struct stream {
	uint8_t *buf;
	size_t len;
	struct evlist expect;
};

/* Builds the frames of specs back to back; frames whose len exceeds max_len
 * are expected as MI_DEC_TOO_LARGE. */
static void stream_build(struct stream *s, const struct spec *sp, size_t n, uint32_t max_len)
{
	size_t total = 0;
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < n; i++)
		total += MI_HDR_LEN + sp[i].len;
	s->buf = malloc(total ? total : 1);
	assert_non_null(s->buf);
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = 1000 + i * 3;
		uint8_t *pl = malloc(sp[i].len ? sp[i].len : 1);
		assert_non_null(pl);
		for (uint32_t k = 0; k < sp[i].len; k++)
			pl[k] = pattern_byte(seq, k);
		uint8_t *f = s->buf + s->len;
		size_t fl = mi_frame_build(f, total - s->len, sp[i].type, (uint16_t)i, (uint16_t)(i * 5),
					   seq, seq * 1000000ull, pl, sp[i].len);
		assert_int_equal(fl, MI_HDR_LEN + sp[i].len);
		if (sp[i].corrupt) {
			assert_true(sp[i].len > 0);
			f[MI_HDR_LEN + sp[i].len / 2] ^= 0x20;
			pl[sp[i].len / 2] ^= 0x20;
		}
		struct mi_frame fr = {
			.h = { .version = MI_VERSION, .type = sp[i].type, .flags = (uint16_t)i,
			       .topic = (uint16_t)(i * 5), .len = sp[i].len, .pcrc = mi_get32(f + 12),
			       .seq = seq, .ts_ns = seq * 1000000ull, .hcrc = mi_get32(f + 32) },
			.payload = pl,
			.pcrc_ok = !sp[i].corrupt,
		};
		evlist_push(&s->expect, sp[i].len > max_len ? MI_DEC_TOO_LARGE : MI_DEC_FRAME, &fr);
		free(pl);
		s->len += fl;
	}
}

static void stream_free(struct stream *s)
{
	free(s->buf);
	evlist_free(&s->expect);
}

#define HDR_FIELDS(X) X(version) X(type) X(flags) X(topic) X(len) X(pcrc) X(seq) X(ts_ns) X(hcrc)

static void ev_assert_equal(const struct ev *want, const struct ev *got)
{
	assert_int_equal(got->status, want->status);
	if (want->status < 0)
		return;
#define EQ(f) assert_int_equal(got->h.f, want->h.f);
	HDR_FIELDS(EQ)
#undef EQ
	if (want->status == MI_DEC_FRAME) {
		assert_int_equal(got->pcrc_ok, want->pcrc_ok);
		if (want->h.len)
			assert_memory_equal(got->payload, want->payload, want->h.len);
	}
}

static void evlist_assert_equal(const struct evlist *want, const struct evlist *got)
{
	assert_int_equal(got->n, want->n);
	for (size_t i = 0; i < want->n; i++)
		ev_assert_equal(&want->v[i], &got->v[i]);
}

/* ---- feeding a decoder ---- */

struct feed {
	struct mi_decoder d;
	struct evlist got;
	size_t short_need;       /* MI_DEC_NEED returned with input left over */
	int stopped;             /* a framing error ended the stream */
};

static void feed_init(struct feed *f, pool_t *pool, uint32_t max_len)
{
	memset(f, 0, sizeof(*f));
	mi_dec_init(&f->d, pool, max_len);
}

static void feed_chunk(struct feed *f, const uint8_t *src, size_t n)
{
	uint8_t *chunk = malloc(n ? n : 1);
	assert_non_null(chunk);
	memcpy(chunk, src, n);
	size_t off = 0;
	while (off < n && !f->stopped) {
		struct mi_frame fr;
		size_t c = (size_t)-1;
		int r = mi_dec_next(&f->d, chunk + off, n - off, &c, &fr);
		assert_true(c <= n - off);
		if (r >= 0)
			assert_true(c > 0);          /* progress on every call with input */
		off += c;
		if (r == MI_DEC_NEED) {
			if (off < n)
				f->short_need++;
			continue;
		}
		if (r == MI_DEC_FRAME) {
			assert_true(fr.h.len <= f->d.max_len);
			assert_true(fr.h.len == 0 || fr.payload != NULL);
		} else if (r == MI_DEC_TOO_LARGE) {
			assert_true(fr.h.len > f->d.max_len);
			assert_null(fr.payload);
		} else {
			assert_true(r < 0);
			f->stopped = 1;
		}
		evlist_push(&f->got, r, &fr);
	}
	free(chunk);
}

static void feed_done(struct feed *f, pool_t *pool)
{
	struct pool_stats st;
	mi_dec_reset(&f->d);
	pool_stats(pool, &st);
	assert_int_equal(st.in_use, 0);
	assert_int_equal(st.bytes_in_use, 0);
	evlist_free(&f->got);
}

/* Whole-buffer feed; the result must equal the oracle. */
static void decode_whole(const struct stream *s, pool_t *pool, uint32_t max_len, struct evlist *ret)
{
	struct feed f;
	feed_init(&f, pool, max_len);
	feed_chunk(&f, s->buf, s->len);
	assert_false(f.stopped);
	assert_true(mi_dec_idle(&f.d));
	*ret = f.got;
	f.got = (struct evlist){ 0 };
	feed_done(&f, pool);
}

/* ---- header codec ---- */

static void test_crc32_is_zlib_crc32(void **state)
{
	(void)state;
	assert_int_equal(mi_crc32("123456789", 9), 0xCBF43926u);
	assert_int_equal(mi_crc32("", 0), 0);
	/* bit for bit zlib's: every length to 300 at every alignment, chained
	 * updates with arbitrary seeds, and a long buffer */
	static uint8_t buf[70000];
	rng_seed(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rng_next();
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 300; len++) {
			uint32_t z = (uint32_t)crc32(0L, buf + off, (uInt)len);
			assert_int_equal(mi_crc32(buf + off, len), z);
			assert_int_equal(mi_crc32_update_portable(0, buf + off, len), z);
		}
	for (int i = 0; i < 1000; i++) {
		uint32_t seed = (uint32_t)rng_next();
		size_t off = rng_next() % 1000, len = rng_next() % 5000;
		uint32_t z = (uint32_t)crc32(seed, buf + off, (uInt)len);
		assert_int_equal(mi_crc32_update(seed, buf + off, len), z);
		assert_int_equal(mi_crc32_update_portable(seed, buf + off, len), z);
	}
	assert_int_equal(mi_crc32(buf, sizeof(buf)), (uint32_t)crc32(0L, buf, sizeof(buf)));
	assert_int_equal(mi_crc32_update_portable(0, buf, sizeof(buf)), (uint32_t)crc32(0L, buf, sizeof(buf)));
}

static void test_hdr_encode_decode_round_trip(void **state)
{
	(void)state;
	rng_seed(1);
	for (int i = 0; i < 2000; i++) {
		struct mi_hdr h = {
			.version = MI_VERSION, .type = (uint8_t)rng_next(), .flags = (uint16_t)rng_next(),
			.topic = (uint16_t)rng_next(), .len = (uint32_t)(rng_next() % (MI_MAX_FRAME_CAP + 1)),
			.pcrc = (uint32_t)rng_next(), .seq = rng_next(), .ts_ns = rng_next(),
		};
		uint8_t b[MI_HDR_LEN];
		struct mi_hdr g;
		mi_hdr_encode(&h, b);
		assert_int_equal(mi_hdr_decode(b, &g), 0);
		h.hcrc = mi_crc32(b, 32);
#define EQ(f) assert_int_equal(g.f, h.f);
		HDR_FIELDS(EQ)
#undef EQ
	}
}

static void test_hdr_wire_layout_is_little_endian(void **state)
{
	(void)state;
	struct mi_hdr h = { .version = 1, .type = MI_DATA, .flags = 0x0102, .topic = 0x0304,
			    .len = 0x05060708, .pcrc = 0x090a0b0c, .seq = 0x1112131415161718ull,
			    .ts_ns = 0x2122232425262728ull };
	const uint8_t want[32] = {
		0x4D, 0x49, 0x01, 0x05, 0x02, 0x01, 0x04, 0x03, 0x08, 0x07, 0x06, 0x05,
		0x0c, 0x0b, 0x0a, 0x09, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,
	};
	uint8_t b[MI_HDR_LEN];
	mi_hdr_encode(&h, b);
	assert_memory_equal(b, want, 32);
	assert_int_equal(mi_get32(b + 32), mi_crc32(b, 32));
	/* version 0 in the struct means "the current one" */
	h.version = 0;
	mi_hdr_encode(&h, b);
	assert_int_equal(b[2], MI_VERSION);
}

static void encode_valid(uint8_t b[MI_HDR_LEN], uint32_t len)
{
	struct mi_hdr h = { .version = MI_VERSION, .type = MI_DATA, .len = len, .seq = 7 };
	mi_hdr_encode(&h, b);
}

static void rehcrc(uint8_t b[MI_HDR_LEN])
{
	mi_put32(b + 32, mi_crc32(b, 32));
}

static void test_hdr_decode_bad_magic(void **state)
{
	(void)state;
	uint8_t b[MI_HDR_LEN];
	struct mi_hdr g;
	memset(&g, 0xAB, sizeof(g));
	encode_valid(b, 10);
	b[0] = 'X';
	rehcrc(b);
	assert_int_equal(mi_hdr_decode(b, &g), -MI_EMAGIC);
	encode_valid(b, 10);
	b[1] = 'J';
	rehcrc(b);
	assert_int_equal(mi_hdr_decode(b, &g), -MI_EMAGIC);
	/* out-parameter untouched on failure */
	assert_int_equal(g.seq, 0xABABABABABABABABull);
}

static void test_hdr_decode_bad_version(void **state)
{
	(void)state;
	uint8_t b[MI_HDR_LEN];
	struct mi_hdr g;
	for (int v = 0; v < 256; v++) {
		if (v == MI_VERSION)
			continue;
		encode_valid(b, 10);
		b[2] = (uint8_t)v;
		rehcrc(b);
		assert_int_equal(mi_hdr_decode(b, &g), -MI_EVERSION);
	}
}

static void test_hdr_decode_bad_hcrc_any_bit(void **state)
{
	(void)state;
	uint8_t b[MI_HDR_LEN];
	struct mi_hdr g;
	/* every single-bit flip after magic/version is caught by the header CRC */
	for (int bit = 3 * 8; bit < MI_HDR_LEN * 8; bit++) {
		encode_valid(b, 10);
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(mi_hdr_decode(b, &g), -MI_EHCRC);
	}
}

static void test_hdr_decode_len_over_cap(void **state)
{
	(void)state;
	uint8_t b[MI_HDR_LEN];
	struct mi_hdr g;
	encode_valid(b, MI_MAX_FRAME_CAP);
	assert_int_equal(mi_hdr_decode(b, &g), 0);
	assert_int_equal(g.len, MI_MAX_FRAME_CAP);
	encode_valid(b, MI_MAX_FRAME_CAP + 1);
	assert_int_equal(mi_hdr_decode(b, &g), -MI_ECAP);
	encode_valid(b, UINT32_MAX);
	assert_int_equal(mi_hdr_decode(b, &g), -MI_ECAP);
}

static void test_names_and_strerror(void **state)
{
	(void)state;
	assert_string_equal(mi_type_name(MI_BYE), "BYE");
	assert_string_equal(mi_type_name(MI_TYPE_MAX), "UNKNOWN");
	assert_string_equal(mi_nack_name(MI_NACK_TOO_LARGE), "too large");
	assert_string_equal(mi_nack_name(MI_NACK_MAX), "unknown");
	assert_string_equal(mi_frame_strerror(-MI_EMAGIC), "bad magic");
	assert_string_equal(mi_frame_strerror(-1), "unknown frame error");
}

/* ---- mi_frame_build ---- */

static void test_frame_build_layout_and_cap(void **state)
{
	(void)state;
	uint8_t pl[100], out[200];
	struct mi_hdr g;
	for (int i = 0; i < 100; i++)
		pl[i] = (uint8_t)i;
	assert_int_equal(mi_frame_build(out, MI_HDR_LEN + 99, MI_DATA, 2, 9, 42, 77, pl, 100), 0);
	assert_int_equal(mi_frame_build(out, MI_HDR_LEN - 1, MI_PING, 0, 0, 0, 0, NULL, 0), 0);
	assert_int_equal(mi_frame_build(out, MI_HDR_LEN, MI_PING, 0, 0, 0, 0, NULL, 0), MI_HDR_LEN);
	assert_int_equal(mi_frame_build(out, MI_HDR_LEN + 100, MI_DATA, 2, 9, 42, 77, pl, 100),
			 MI_HDR_LEN + 100);
	assert_int_equal(mi_hdr_decode(out, &g), 0);
	assert_int_equal(g.type, MI_DATA);
	assert_int_equal(g.flags, 2);
	assert_int_equal(g.topic, 9);
	assert_int_equal(g.seq, 42);
	assert_int_equal(g.ts_ns, 77);
	assert_int_equal(g.len, 100);
	assert_int_equal(g.pcrc, mi_crc32(pl, 100));
	assert_memory_equal(out + MI_HDR_LEN, pl, 100);
	/* a payload already in place behind the header (in-place build) */
	uint8_t inplace[MI_HDR_LEN + 100];
	memcpy(inplace + MI_HDR_LEN, pl, 100);
	assert_int_equal(mi_frame_build(inplace, sizeof(inplace), MI_DATA, 2, 9, 42, 77,
					inplace + MI_HDR_LEN, 100), MI_HDR_LEN + 100);
	assert_memory_equal(inplace, out, MI_HDR_LEN + 100);
}

/* ---- per-frame MAC ---- */

/* The keys-mode UDP datagram of docs/PROTOCOL.md (UDP): device "sensor-7",
 * seq 1, topic 0, ts_ns 0x0102030405060708, data "21.5", the MAC keyed with
 * the device key 00 01 .. 1f over the header and id_len || id || data.
 * tests/integration/test_udp.py sends these bytes to ingestd. */
static const uint8_t udp_example[65] = {
	0x4d, 0x49, 0x01, 0x05, 0x02, 0x00, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00, 0x4e, 0xcc, 0xb4, 0x22,
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	0x5b, 0x52, 0x23, 0x6e, 0x08, 0x73, 0x65, 0x6e, 0x73, 0x6f, 0x72, 0x2d, 0x37, 0x32, 0x31, 0x2e,
	0x35, 0x0e, 0x2a, 0xef, 0x8e, 0x88, 0x33, 0x54, 0xf3, 0xe3, 0x5f, 0x02, 0xc1, 0xed, 0xb4, 0x88,
	0x91,
};

static void test_frame_mac_udp_example(void **state)
{
	(void)state;
	uint8_t key[MI_MAC_KEY_LEN], pl[29], out[MI_HDR_LEN + sizeof(pl)], mac[MI_MAC_LEN];
	struct mi_hdr h;
	for (int i = 0; i < MI_MAC_KEY_LEN; i++)
		key[i] = (uint8_t)i;
	memcpy(pl, "\x08sensor-721.5", 13);
	/* the MAC covers len, which counts the MAC: fill the header first */
	h = (struct mi_hdr){ .version = MI_VERSION, .type = MI_DATA, .flags = MI_F_MAC, .len = sizeof(pl),
			     .seq = 1, .ts_ns = 0x0102030405060708ull };
	mi_frame_mac(pl + 13, key, &h, pl, 13);
	assert_int_equal(mi_frame_build(out, sizeof(out), MI_DATA, MI_F_MAC, 0, 1, 0x0102030405060708ull, pl,
					sizeof(pl)), sizeof(udp_example));
	assert_memory_equal(out, udp_example, sizeof(udp_example));
	/* what ingestd does: decode, then the MAC of what precedes the last 16 bytes */
	assert_int_equal(mi_hdr_decode(udp_example, &h), 0);
	mi_frame_mac(mac, key, &h, udp_example + MI_HDR_LEN, h.len - MI_MAC_LEN);
	assert_memory_equal(mac, udp_example + sizeof(udp_example) - MI_MAC_LEN, MI_MAC_LEN);
	/* every header field but the CRCs is covered, and every payload byte */
	for (size_t i = 0; i < sizeof(udp_example) - MI_MAC_LEN; i++) {
		if ((i >= 12 && i < 16) || (i >= 32 && i < MI_HDR_LEN))
			continue;
		uint8_t b[sizeof(udp_example)];
		memcpy(b, udp_example, sizeof(b));
		b[i] ^= 0x01;
		struct mi_hdr g = h;
		if (i < MI_HDR_LEN) {
			rehcrc(b);
			if (mi_hdr_decode(b, &g) < 0)
				continue;   /* magic, version */
		}
		mi_frame_mac(mac, key, &g, b + MI_HDR_LEN, h.len - MI_MAC_LEN);
		assert_memory_not_equal(mac, udp_example + sizeof(udp_example) - MI_MAC_LEN, MI_MAC_LEN);
	}
}

/* ---- device ids ---- */

static void test_devid_valid_charset_and_length(void **state)
{
	(void)state;
	const char *ok = "ABCXYZabcxyz0189._:-";
	assert_true(mi_devid_valid((const uint8_t *)ok, strlen(ok)));
	for (int c = 0; c < 256; c++) {
		uint8_t id[3] = { 'a', (uint8_t)c, 'b' };
		int want = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '.' || c == '_' || c == ':' || c == '-';
		assert_int_equal(mi_devid_valid(id, 3), want);
	}
	uint8_t id[MI_DEVID_MAX + 1];
	memset(id, 'x', sizeof(id));
	assert_false(mi_devid_valid(id, 0));
	assert_true(mi_devid_valid(id, 1));
	assert_true(mi_devid_valid(id, MI_DEVID_MAX));
	assert_false(mi_devid_valid(id, MI_DEVID_MAX + 1));
}

/* ---- decoder ---- */

/* Small: every split point and every pair of split points. */
static const struct spec small_specs[] = {
	{ MI_DATA, 0, 0 }, { MI_DATA, 1, 0 }, { MI_HELLO, 20, 0 }, { MI_DATA, 64, 0 },
	{ MI_DATA, 40, 1 }, { MI_DATA, 100, 0 } /* > max_len: too large */, { MI_DATA, 3, 0 },
	{ MI_PING, 0, 0 },
};
#define SMALL_MAX 64

/* Large: random splits; 0, 1, 100 and 64 KiB payloads, a corrupt one and a
 * too-large one in the middle. */
static const struct spec big_specs[] = {
	{ MI_DATA, 0, 0 }, { MI_DATA, 1, 0 }, { MI_DATA, 100, 0 }, { MI_DATA, 65536, 0 },
	{ MI_PING, 0, 0 }, { MI_DATA, 100, 1 }, { MI_DATA, 70000, 0 } /* too large */,
	{ MI_DATA, 1, 0 }, { MI_DATA, 255, 0 }, { MI_DATA, 256, 0 }, { MI_DATA, 257, 0 },
	{ MI_ACK, 0, 0 }, { MI_DATA, 65535, 1 }, { MI_DATA, 4096, 0 }, { MI_DATA, 36, 0 },
	{ MI_DATA, 35, 0 }, { MI_DATA, 100, 0 }, { MI_BYE, 0, 0 },
};
#define BIG_MAX 65536

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A pool, a stream and its whole-buffer decoding (checked against the
 * oracle): what every decoder test starts from. */
struct fx {
	pool_t *pool;
	uint32_t max;
	struct stream s;
	struct evlist ref;
};

static void fx_open(struct fx *x, const struct spec *sp, size_t n, uint32_t max_len)
{
	x->pool = pool_new();
	assert_non_null(x->pool);
	x->max = max_len;
	stream_build(&x->s, sp, n, max_len);
	decode_whole(&x->s, x->pool, max_len, &x->ref);
	evlist_assert_equal(&x->s.expect, &x->ref);
}

static void fx_close(struct fx *x)
{
	evlist_free(&x->ref);
	stream_free(&x->s);
	pool_free(x->pool);
}

/* Feeds the stream cut at cuts[] (ascending) and checks it against ref.
 * Returns how often MI_DEC_NEED came back with input left over. */
static size_t fx_feed_cuts(struct fx *x, const size_t *cuts, size_t ncuts)
{
	struct feed f;
	size_t prev = 0;
	feed_init(&f, x->pool, x->max);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : x->s.len;
		feed_chunk(&f, x->s.buf + prev, end - prev);
		prev = end;
	}
	evlist_assert_equal(&x->ref, &f.got);
	assert_true(mi_dec_idle(&f.d));
	feed_done(&f, x->pool);
	return f.short_need;
}

static void test_dec_whole_buffer_yields_the_frames_built(void **state)
{
	(void)state;
	struct fx x;
	fx_open(&x, big_specs, NELEM(big_specs), BIG_MAX);   /* checks the oracle */
	fx_close(&x);
}

static void test_dec_every_split_point_matches_whole(void **state)
{
	(void)state;
	struct fx x;
	fx_open(&x, small_specs, NELEM(small_specs), SMALL_MAX);
	for (size_t p = 0; p <= x.s.len; p++)
		fx_feed_cuts(&x, &p, 1);
	fx_close(&x);
}

static void test_dec_every_pair_of_split_points_matches_whole(void **state)
{
	(void)state;
	struct fx x;
	fx_open(&x, small_specs, NELEM(small_specs), SMALL_MAX);
	for (size_t p = 0; p <= x.s.len; p++)
		for (size_t q = p; q <= x.s.len; q++)
			fx_feed_cuts(&x, (size_t[]){ p, q }, 2);
	fx_close(&x);
}

static void test_dec_byte_by_byte_matches_whole(void **state)
{
	(void)state;
	struct fx x;
	fx_open(&x, big_specs, NELEM(big_specs), BIG_MAX);
	size_t *cuts = malloc(x.s.len * sizeof(*cuts));
	assert_non_null(cuts);
	for (size_t i = 0; i < x.s.len; i++)
		cuts[i] = i + 1;
	fx_feed_cuts(&x, cuts, x.s.len - 1);
	free(cuts);
	fx_close(&x);
}

static size_t random_chunk(void)
{
	uint32_t k = rng_range(0, 99);
	return rng_range(1, k < 50 ? 40 : k < 80 ? 300 : 70000);
}

static void test_dec_random_splits_match_whole(void **state)
{
	(void)state;
	struct fx x;
	fx_open(&x, big_specs, NELEM(big_specs), BIG_MAX);
	size_t *cuts = malloc(x.s.len * sizeof(*cuts));
	assert_non_null(cuts);
	rng_seed(0x5eed);
	for (int it = 0; it < 3000; it++) {
		size_t n = 0;
		for (size_t off = random_chunk(); off < x.s.len; off += random_chunk())
			cuts[n++] = off;
		fx_feed_cuts(&x, cuts, n);
	}
	free(cuts);
	fx_close(&x);
}

static void test_dec_bad_payload_crc_keeps_stream(void **state)
{
	(void)state;
	static const struct spec sp[] = { { MI_DATA, 50, 1 }, { MI_DATA, 50, 0 }, { MI_DATA, 1, 1 },
					  { MI_PING, 0, 0 } };
	struct fx x;
	fx_open(&x, sp, NELEM(sp), 1000);
	assert_int_equal(x.ref.n, 4);
	assert_int_equal(x.ref.v[0].status, MI_DEC_FRAME);
	assert_int_equal(x.ref.v[0].pcrc_ok, 0);
	assert_int_equal(x.ref.v[1].pcrc_ok, 1);
	assert_int_equal(x.ref.v[2].pcrc_ok, 0);
	assert_int_equal(x.ref.v[3].pcrc_ok, 1);
	assert_int_equal(x.ref.v[3].h.type, MI_PING);
	fx_close(&x);
}

static void test_dec_too_large_skips_payload_and_next_frame_decodes(void **state)
{
	(void)state;
	static const struct spec sp[] = { { MI_DATA, 1001, 0 }, { MI_DATA, 10, 0 } };
	struct fx x;
	fx_open(&x, sp, NELEM(sp), 1000);
	assert_int_equal(x.ref.n, 2);
	assert_int_equal(x.ref.v[0].status, MI_DEC_TOO_LARGE);
	assert_int_equal(x.ref.v[0].h.len, 1001);
	assert_int_equal(x.ref.v[0].h.seq, 1000);
	assert_int_equal(x.ref.v[1].status, MI_DEC_FRAME);
	assert_int_equal(x.ref.v[1].h.seq, 1003);
	assert_int_equal(x.ref.v[1].pcrc_ok, 1);
	/* split anywhere: the same two results */
	for (size_t p = 0; p <= x.s.len; p++) {
		struct feed f;
		struct pool_stats st;
		feed_init(&f, x.pool, 1000);
		feed_chunk(&f, x.s.buf, p);
		assert_true(p < MI_HDR_LEN || p >= MI_HDR_LEN + 1001 || !mi_dec_idle(&f.d));
		pool_stats(x.pool, &st);
		if (p <= MI_HDR_LEN + 1001)
			assert_int_equal(st.in_use, 0);   /* a skipped payload is never gathered */
		feed_chunk(&f, x.s.buf + p, x.s.len - p);
		evlist_assert_equal(&x.ref, &f.got);
		feed_done(&f, x.pool);
	}
	fx_close(&x);
}

/* A len at the hard cap with a small max_len: 16 MiB skipped in pieces. */
static void test_dec_too_large_at_cap_skips_16mib(void **state)
{
	(void)state;
	pool_t *pool = pool_new();
	uint8_t hdr[MI_HDR_LEN], next[MI_HDR_LEN + 5];
	struct mi_hdr h = { .version = 1, .type = MI_DATA, .len = MI_MAX_FRAME_CAP, .seq = 1 };
	mi_hdr_encode(&h, hdr);
	assert_int_equal(mi_frame_build(next, sizeof(next), MI_DATA, 0, 0, 2, 0, "hello", 5), sizeof(next));
	size_t piece = 1u << 20;
	uint8_t *junk = calloc(1, piece);
	assert_non_null(junk);
	struct feed f;
	feed_init(&f, pool, MI_MAX_FRAME_DEFAULT);
	feed_chunk(&f, hdr, sizeof(hdr));
	assert_int_equal(f.got.n, 1);
	assert_int_equal(f.got.v[0].status, MI_DEC_TOO_LARGE);
	for (size_t left = MI_MAX_FRAME_CAP; left; left -= piece) {
		assert_false(mi_dec_idle(&f.d));
		feed_chunk(&f, junk, piece);
	}
	assert_true(mi_dec_idle(&f.d));
	feed_chunk(&f, next, sizeof(next));
	assert_int_equal(f.got.n, 2);
	assert_int_equal(f.got.v[1].status, MI_DEC_FRAME);
	assert_int_equal(f.got.v[1].h.seq, 2);
	assert_memory_equal(f.got.v[1].payload, "hello", 5);
	feed_done(&f, pool);
	free(junk);
	pool_free(pool);
}

/* MI_DEC_NEED is documented as "consumed all input".  When the last bytes of
 * a skipped (too large) payload and the next frame arrive in one read, the
 * decoder must go on to that frame (or at least say it did not take all the
 * input with a status other than NEED): a caller that trusts the contract
 * would otherwise drop the next frame. */
static const struct spec skip_then_frame[] = { { MI_DATA, 100, 0 }, { MI_DATA, 10, 0 } };

/* The fixture lives in setup/teardown so a failed assertion leaks nothing. */
static int fx_skip_setup(void **state)
{
	static struct fx x;
	fx_open(&x, skip_then_frame, NELEM(skip_then_frame), 64);
	*state = &x;
	return 0;
}

static int fx_teardown(void **state)
{
	fx_close(*state);
	return 0;
}

static void test_dec_need_consumes_all_input_after_skip(void **state)
{
	struct fx *x = *state;
	struct mi_decoder d;
	struct mi_frame fr;
	size_t c, first = MI_HDR_LEN + 50, rest = x->s.len - first;
	mi_dec_init(&d, x->pool, 64);
	assert_int_equal(mi_dec_next(&d, x->s.buf, first, &c, &fr), MI_DEC_TOO_LARGE);
	assert_int_equal(c, first);
	int r = mi_dec_next(&d, x->s.buf + first, rest, &c, &fr);
	mi_dec_reset(&d);                 /* the frame, if any, is in place: no buffer */
	if (r == MI_DEC_NEED) {
		assert_int_equal(c, rest);    /* fails today: c == 50 */
	} else {
		assert_int_equal(r, MI_DEC_FRAME);
		assert_int_equal(c, rest);
		assert_int_equal(fr.h.seq, 1003);
	}
}

/* Every status but a trailing skip keeps the NEED contract: checked on the
 * streams without too-large frames. */
static void test_dec_need_contract_holds_without_skips(void **state)
{
	(void)state;
	static const struct spec sp[] = { { MI_DATA, 0, 0 }, { MI_DATA, 300, 0 }, { MI_HELLO, 7, 0 },
					  { MI_DATA, 5000, 1 } };
	struct fx x;
	static size_t cuts[6000];
	fx_open(&x, sp, NELEM(sp), 5000);
	rng_seed(77);
	for (int it = 0; it < 500; it++) {
		size_t n = 0;
		for (size_t off = rng_range(1, 400); off < x.s.len && n < 6000; off += rng_range(1, 400))
			cuts[n++] = off;
		assert_int_equal(fx_feed_cuts(&x, cuts, n), 0);
	}
	fx_close(&x);
}

static void test_dec_garbage_first_byte_fails_at_once(void **state)
{
	(void)state;
	pool_t *pool = pool_new();
	struct mi_decoder d;
	struct mi_frame fr;
	size_t c;
	const uint8_t *http = (const uint8_t *)"GET / HTTP/1.1\r\nHost: example\r\n\r\n....";
	/* one byte is enough to tell */
	for (int b = 0; b < 256; b++) {
		if (b == MI_MAGIC0)
			continue;
		uint8_t x = (uint8_t)b;
		mi_dec_init(&d, pool, 1000);
		assert_int_equal(mi_dec_next(&d, &x, 1, &c, &fr), -MI_EMAGIC);
		assert_true(c <= 1);
		mi_dec_reset(&d);
	}
	/* a whole header's worth of garbage (fast path) */
	mi_dec_init(&d, pool, 1000);
	assert_int_equal(mi_dec_next(&d, http, strlen((const char *)http), &c, &fr), -MI_EMAGIC);
	mi_dec_reset(&d);
	/* right first byte, wrong second */
	uint8_t m = MI_MAGIC0, j = 'J';
	mi_dec_init(&d, pool, 1000);
	assert_int_equal(mi_dec_next(&d, &m, 1, &c, &fr), MI_DEC_NEED);
	assert_int_equal(c, 1);
	assert_int_equal(mi_dec_next(&d, &j, 1, &c, &fr), -MI_EMAGIC);
	mi_dec_reset(&d);
	pool_free(pool);
}

/* Each framing error, in place and gathered byte by byte, after a good frame. */
static void test_dec_framing_errors_stop_the_stream(void **state)
{
	(void)state;
	pool_t *pool = pool_new();
	uint8_t good[MI_HDR_LEN + 3], bad[MI_HDR_LEN], buf[2 * MI_HDR_LEN + 3];
	assert_int_equal(mi_frame_build(good, sizeof(good), MI_DATA, 0, 0, 1, 0, "abc", 3), sizeof(good));
	static const int errs[] = { MI_EVERSION, MI_EHCRC, MI_ECAP };
	for (size_t e = 0; e < NELEM(errs); e++) {
		encode_valid(bad, 10);
		if (errs[e] == MI_EVERSION) {
			bad[2] = 2;
			rehcrc(bad);
		} else if (errs[e] == MI_EHCRC) {
			bad[20] ^= 1;
		} else {
			encode_valid(bad, MI_MAX_FRAME_CAP + 1);
		}
		memcpy(buf, good, sizeof(good));
		memcpy(buf + sizeof(good), bad, sizeof(bad));
		for (int mode = 0; mode < 2; mode++) {
			struct feed f;
			feed_init(&f, pool, 1000);
			if (mode == 0) {
				feed_chunk(&f, buf, sizeof(buf));
			} else {
				for (size_t i = 0; i < sizeof(buf) && !f.stopped; i++)
					feed_chunk(&f, buf + i, 1);
			}
			assert_int_equal(f.got.n, 2);
			assert_int_equal(f.got.v[0].status, MI_DEC_FRAME);
			assert_int_equal(f.got.v[1].status, -errs[e]);
			feed_done(&f, pool);
		}
	}
	pool_free(pool);
}

static uint64_t in_use(const pool_t *p)
{
	struct pool_stats st;
	pool_stats(p, &st);
	return st.in_use;
}

static void test_dec_returns_pool_buffer(void **state)
{
	(void)state;
	pool_t *pool = pool_new();
	uint8_t fr_buf[MI_HDR_LEN + 1000], pl[1000];
	memset(pl, 0x5a, sizeof(pl));
	assert_int_equal(mi_frame_build(fr_buf, sizeof(fr_buf), MI_DATA, 0, 0, 9, 0, pl, 1000),
			 sizeof(fr_buf));
	struct mi_decoder d;
	struct mi_frame fr;
	size_t c;

	/* reset in the middle of a gathered payload */
	mi_dec_init(&d, pool, 4096);
	assert_true(mi_dec_idle(&d));
	assert_int_equal(mi_dec_next(&d, fr_buf, MI_HDR_LEN + 10, &c, &fr), MI_DEC_NEED);
	assert_false(mi_dec_idle(&d));
	assert_int_equal(in_use(pool), 1);
	mi_dec_reset(&d);
	assert_int_equal(in_use(pool), 0);
	assert_true(mi_dec_idle(&d));

	/* a gathered frame is the caller's until the next call */
	mi_dec_init(&d, pool, 4096);
	assert_int_equal(mi_dec_next(&d, fr_buf, 500, &c, &fr), MI_DEC_NEED);
	assert_int_equal(mi_dec_next(&d, fr_buf + 500, sizeof(fr_buf) - 500, &c, &fr), MI_DEC_FRAME);
	assert_int_equal(c, sizeof(fr_buf) - 500);
	assert_true(fr.payload < fr_buf || fr.payload >= fr_buf + sizeof(fr_buf));
	assert_memory_equal(fr.payload, pl, 1000);
	assert_int_equal(fr.pcrc_ok, 1);
	assert_true(mi_dec_idle(&d));
	assert_int_equal(in_use(pool), 1);
	/* the next call, even with no bytes, gives it back */
	assert_int_equal(mi_dec_next(&d, fr_buf, 0, &c, &fr), MI_DEC_NEED);
	assert_int_equal(c, 0);
	assert_int_equal(in_use(pool), 0);

	/* a frame wholly in the input is returned in place, no pool buffer */
	assert_int_equal(mi_dec_next(&d, fr_buf, sizeof(fr_buf), &c, &fr), MI_DEC_FRAME);
	assert_ptr_equal(fr.payload, fr_buf + MI_HDR_LEN);
	assert_int_equal(in_use(pool), 0);

	/* gathered, then reset while the caller still holds the frame */
	assert_int_equal(mi_dec_next(&d, fr_buf, 40, &c, &fr), MI_DEC_NEED);
	assert_int_equal(mi_dec_next(&d, fr_buf + 40, sizeof(fr_buf) - 40, &c, &fr), MI_DEC_FRAME);
	mi_dec_reset(&d);
	assert_int_equal(in_use(pool), 0);
	/* buffers are recycled: a long run reserves nothing more */
	struct pool_stats st;
	pool_stats(pool, &st);
	uint64_t reserved = st.bytes_reserved;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(mi_dec_next(&d, fr_buf, 100, &c, &fr), MI_DEC_NEED);
		assert_int_equal(mi_dec_next(&d, fr_buf + 100, sizeof(fr_buf) - 100, &c, &fr), MI_DEC_FRAME);
	}
	mi_dec_reset(&d);
	assert_int_equal(in_use(pool), 0);
	assert_int_equal(st.bytes_reserved, reserved);
	pool_free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32_is_zlib_crc32),
		cmocka_unit_test(test_hdr_encode_decode_round_trip),
		cmocka_unit_test(test_hdr_wire_layout_is_little_endian),
		cmocka_unit_test(test_hdr_decode_bad_magic),
		cmocka_unit_test(test_hdr_decode_bad_version),
		cmocka_unit_test(test_hdr_decode_bad_hcrc_any_bit),
		cmocka_unit_test(test_hdr_decode_len_over_cap),
		cmocka_unit_test(test_names_and_strerror),
		cmocka_unit_test(test_frame_build_layout_and_cap),
		cmocka_unit_test(test_frame_mac_udp_example),
		cmocka_unit_test(test_devid_valid_charset_and_length),
		cmocka_unit_test(test_dec_whole_buffer_yields_the_frames_built),
		cmocka_unit_test(test_dec_every_split_point_matches_whole),
		cmocka_unit_test(test_dec_every_pair_of_split_points_matches_whole),
		cmocka_unit_test(test_dec_byte_by_byte_matches_whole),
		cmocka_unit_test(test_dec_random_splits_match_whole),
		cmocka_unit_test(test_dec_bad_payload_crc_keeps_stream),
		cmocka_unit_test(test_dec_too_large_skips_payload_and_next_frame_decodes),
		cmocka_unit_test(test_dec_too_large_at_cap_skips_16mib),
		cmocka_unit_test_setup_teardown(test_dec_need_consumes_all_input_after_skip, fx_skip_setup,
						fx_teardown),
		cmocka_unit_test(test_dec_need_contract_holds_without_skips),
		cmocka_unit_test(test_dec_garbage_first_byte_fails_at_once),
		cmocka_unit_test(test_dec_framing_errors_stop_the_stream),
		cmocka_unit_test(test_dec_returns_pool_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
