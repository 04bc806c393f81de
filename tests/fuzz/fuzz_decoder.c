/* fuzz_decoder — libFuzzer target for the incremental frame decoder.
 *
 * Input layout:
 *   byte 0      max_len selector (low 3 bits, see max_lens[])
 *   bytes 1..4  seed of the split sizes (little-endian)
 *   rest        the byte stream
 *
 * The stream is decoded twice: in one piece, and in pieces whose sizes come
 * from the seed, each piece in its own exact-size heap copy (ASan sees any
 * read past it).  Both must give the same results up to and including the
 * first framing error; every call must respect the documented invariants;
 * the decoder must hand every pool buffer back.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define MAX_EVENTS 4096

static const uint32_t max_lens[8] = { 0, 1, 16, 64, 256, 4096, MI_MAX_FRAME_DEFAULT, MI_MAX_FRAME_CAP };

struct event {
	int status;
	struct mi_hdr h;
	int pcrc_ok;
	uint32_t crc;            /* of the payload as returned */
};

struct run {
	struct mi_decoder d;
	struct event ev[MAX_EVENTS];
	size_t n;
	int stopped;
};

static void feed(struct run *r, const uint8_t *src, size_t len)
{
	uint8_t *chunk = malloc(len ? len : 1);
	CHECK(chunk);
	memcpy(chunk, src, len);
	size_t off = 0;
	while (off < len && !r->stopped && r->n < MAX_EVENTS) {
		struct mi_frame f;
		size_t c = (size_t)-1;
		int st = mi_dec_next(&r->d, chunk + off, len - off, &c, &f);
		CHECK(c <= len - off);
		if (st >= 0)
			CHECK(c > 0);                  /* progress on every call */
		off += c;
		if (st == MI_DEC_NEED) {
			/* MI_DEC_NEED promises the whole input was taken */
			CHECK(off == len);
			continue;
		}
		struct event *e = &r->ev[r->n++];
		memset(e, 0, sizeof(*e));
		e->status = st;
		if (st < 0) {
			CHECK(st <= -MI_EMAGIC && st > -MI_EFRAME_MAX && st != -MI_ENOBUF);
			r->stopped = 1;
			break;
		}
		CHECK(f.h.version == MI_VERSION);
		CHECK(f.h.len <= MI_MAX_FRAME_CAP);
		e->h = f.h;
		if (st == MI_DEC_TOO_LARGE) {
			CHECK(f.h.len > r->d.max_len);
			CHECK(f.payload == NULL);
			continue;
		}
		CHECK(st == MI_DEC_FRAME);
		CHECK(f.h.len <= r->d.max_len);
		CHECK(f.h.len == 0 || f.payload != NULL);
		/* reads every payload byte: ASan checks it lies in live memory */
		e->crc = mi_crc32(f.payload, f.h.len);
		e->pcrc_ok = f.pcrc_ok;
		CHECK(f.pcrc_ok == (e->crc == f.h.pcrc));
	}
	free(chunk);
}

static void same_event(const struct event *a, const struct event *b)
{
	CHECK(a->status == b->status);
	if (a->status < 0)
		return;
	CHECK(a->h.type == b->h.type && a->h.flags == b->h.flags && a->h.topic == b->h.topic);
	CHECK(a->h.len == b->h.len && a->h.pcrc == b->h.pcrc && a->h.hcrc == b->h.hcrc);
	CHECK(a->h.seq == b->h.seq && a->h.ts_ns == b->h.ts_ns);
	CHECK(a->pcrc_ok == b->pcrc_ok && a->crc == b->crc);
}

static void finish(struct run *r, pool_t *pool)
{
	struct pool_stats st;
	mi_dec_reset(&r->d);
	CHECK(mi_dec_idle(&r->d));
	pool_stats(pool, &st);
	CHECK(st.in_use == 0 && st.bytes_in_use == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, split;
	uint32_t max_len = MI_MAX_FRAME_DEFAULT, seed = 1;
	if (size >= 5) {
		max_len = max_lens[data[0] & 7];
		seed = mi_get32(data + 1) | 1;
		data += 5;
		size -= 5;
	}
	pool_t *pool = pool_new();
	CHECK(pool);

	memset(&whole, 0, sizeof(whole));
	mi_dec_init(&whole.d, pool, max_len);
	feed(&whole, data, size);
	int whole_idle = mi_dec_idle(&whole.d);
	finish(&whole, pool);

	memset(&split, 0, sizeof(split));
	mi_dec_init(&split.d, pool, max_len);
	uint32_t x = seed;
	for (size_t off = 0; off < size && !split.stopped && split.n < MAX_EVENTS;) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		size_t n;
		switch (x & 3) {
		case 0: n = 1; break;
		case 1: n = 1 + (x >> 8) % 8; break;
		case 2: n = 1 + (x >> 8) % 64; break;
		default: n = 1 + (x >> 8) % 1024; break;
		}
		if (n > size - off)
			n = size - off;
		feed(&split, data + off, n);
		off += n;
	}
	int split_idle = mi_dec_idle(&split.d);

	size_t n = whole.n < split.n ? whole.n : split.n;
	for (size_t i = 0; i < n; i++)
		same_event(&whole.ev[i], &split.ev[i]);
	if (whole.n < MAX_EVENTS && split.n < MAX_EVENTS) {
		CHECK(whole.n == split.n);
		CHECK(whole.stopped == split.stopped);
		if (!whole.stopped)
			CHECK(whole_idle == split_idle);
	}
	finish(&split, pool);
	pool_free(pool);
	return 0;
}
