/* test_ring — SPSC record ring (shm/ring.h).
 *
 * Single-process tests drive a heap ring of 4 KiB by hand to reach each
 * wrap case; the stress test runs a real producer process against the
 * consumer over a shm region, with futex waits on both sides.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/frame.h"
#include "common/record.h"
#include "shm/atomic.h"
#include "shm/futex.h"
#include "shm/ring.h"
#include "shm/shm.h"

#define CAP 4096u
#define ID "dev"
#define ID_LEN 3

static struct ring_hdr *ring_new(uint64_t cap)
{
	void *m = aligned_alloc(4096, RING_DATA_OFF + cap);
	assert_non_null(m);
	memset(m, 0x5C, RING_DATA_OFF + cap);
	ring_init(m, cap);
	return m;
}

static uint8_t pat(uint64_t seq, uint32_t i)
{
	return (uint8_t)(seq ^ (seq >> 8) ^ (i * 29u));
}

/* plen giving a record of exactly total bytes (total a multiple of 8). */
static uint32_t plen_for(uint32_t total)
{
	return total - REC_HDR_LEN - ID_LEN;
}

static struct rec_hdr *put(struct ring_prod *p, uint64_t seq, uint32_t plen)
{
	uint8_t pl[4096];
	assert_true(plen <= sizeof(pl));
	void *dst = ring_reserve(p, rec_size(ID_LEN, plen));
	if (!dst)
		return NULL;
	for (uint32_t i = 0; i < plen; i++)
		pl[i] = pat(seq, i);
	rec_build_data(dst, (const uint8_t *)ID, ID_LEN, 1, 0, seq, seq, seq, pl, plen, mi_crc32(pl, plen));
	return dst;
}

static void check(const struct rec_hdr *r, uint64_t seq, uint32_t plen)
{
	assert_non_null(r);
	assert_int_equal(r->type, REC_DATA);
	assert_int_equal(r->seq, seq);
	assert_int_equal(r->plen, plen);
	assert_int_equal(rec_crc(r), r->crc);
	assert_int_equal(r->id_len, ID_LEN);
	assert_memory_equal(rec_id(r), ID, ID_LEN);
	uint8_t want[4096];
	assert_true(plen <= sizeof(want));
	for (uint32_t i = 0; i < plen; i++)
		want[i] = pat(seq, i);
	if (plen)
		assert_memory_equal(rec_payload(r), want, plen);
}

static const struct rec_hdr *peek(struct ring_cons *c)
{
	int err = 12345;
	const struct rec_hdr *r = ring_cons_peek(c, shm_load_acquire(&c->h->head), &err);
	assert_int_equal(err, 0);
	return r;
}

static int peek_err(struct ring_cons *c)
{
	int err = 0;
	assert_null(ring_cons_peek(c, shm_load_acquire(&c->h->head), &err));
	return err;
}

static void release_to(struct ring_hdr *h, uint64_t pos)
{
	shm_store_release(&h->tail, pos);
	shm_store_release(&h->released, pos);
}

/* Fills the ring with records of the given totals, consumes and releases them. */
static uint64_t advance_to(struct ring_hdr *h, struct ring_prod *p, struct ring_cons *c,
			   const uint32_t *totals, int n)
{
	for (int i = 0; i < n; i++)
		assert_non_null(put(p, 100 + (uint64_t)i, plen_for(totals[i])));
	ring_publish(p);
	for (int i = 0; i < n; i++) {
		const struct rec_hdr *r = peek(c);
		check(r, 100 + (uint64_t)i, plen_for(totals[i]));
		ring_cons_advance(c, rec_total(r));
	}
	assert_null(peek(c));
	release_to(h, c->pos);
	return c->pos;
}

static void test_reserve_publish_peek_advance_in_order(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	uint8_t *d = ring_data(h);
	struct rec_hdr *a = put(&p, 1, 5), *b = put(&p, 2, 61), *e = put(&p, 3, 157);
	assert_ptr_equal(a, d);
	assert_ptr_equal(b, d + rec_size(ID_LEN, 5));
	assert_ptr_equal(e, (uint8_t *)b + rec_size(ID_LEN, 61));
	uint64_t end = rec_size(ID_LEN, 5) + rec_size(ID_LEN, 61) + rec_size(ID_LEN, 157);
	assert_int_equal(ring_publish(&p), end);
	assert_int_equal(shm_load_acquire(&h->head), end);
	const struct rec_hdr *r = peek(&c);
	assert_ptr_equal(r, a);
	assert_ptr_equal(peek(&c), a);        /* peek does not move */
	check(r, 1, 5);
	ring_cons_advance(&c, rec_total(r));
	check(r = peek(&c), 2, 61);
	ring_cons_advance(&c, rec_total(r));
	check(r = peek(&c), 3, 157);
	ring_cons_advance(&c, rec_total(r));
	assert_null(peek(&c));
	assert_int_equal(c.pos, end);
	free(h);
}

static void test_consumer_sees_nothing_before_publish(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	assert_non_null(put(&p, 1, 10));
	assert_int_equal(shm_load_acquire(&h->head), 0);
	assert_null(peek(&c));
	ring_publish(&p);
	assert_non_null(put(&p, 2, 10));       /* reserved, not published */
	check(peek(&c), 1, 10);
	ring_cons_advance(&c, rec_size(ID_LEN, 10));
	assert_null(peek(&c));
	ring_publish(&p);
	check(peek(&c), 2, 10);
	free(h);
}

static void test_wrap_with_pad(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	static const uint32_t t[] = { 1024, 1024, 1024, 824 };   /* to 4096 - 200 */
	assert_int_equal(advance_to(h, &p, &c, t, 4), CAP - 200);
	uint8_t *d = ring_data(h);
	struct rec_hdr *r = put(&p, 7, plen_for(256));
	assert_ptr_equal(r, d);
	const struct rec_hdr *pad = (const struct rec_hdr *)(const void *)(d + CAP - 200);
	assert_int_equal(pad->type, REC_PAD);
	assert_int_equal(pad->plen, 200 - REC_HDR_LEN);
	assert_int_equal(pad->id_len, 0);
	assert_int_equal(rec_total(pad), 200);
	assert_int_equal(ring_publish(&p), CAP + 256);
	const struct rec_hdr *g = peek(&c);
	assert_ptr_equal(g, d);
	assert_int_equal(c.pos, CAP);          /* pad skipped */
	check(g, 7, plen_for(256));
	ring_cons_advance(&c, 256);
	assert_null(peek(&c));
	free(h);
}

static void test_wrap_with_bare_skip_under_40_bytes(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	static const uint32_t t[] = { 1024, 1024, 1024, 992 };   /* to 4096 - 32 */
	assert_int_equal(advance_to(h, &p, &c, t, 4), CAP - 32);
	uint8_t *d = ring_data(h);
	memset(d + CAP - 32, 0x77, 32);
	struct rec_hdr *r = put(&p, 9, plen_for(64));
	assert_ptr_equal(r, d);
	for (int i = 0; i < 32; i++)          /* no pad header written */
		assert_int_equal(d[CAP - 32 + i], 0x77);
	assert_int_equal(ring_publish(&p), CAP + 64);
	const struct rec_hdr *g = peek(&c);
	assert_ptr_equal(g, d);
	assert_int_equal(c.pos, CAP);
	check(g, 9, plen_for(64));
	free(h);
}

static void test_record_ending_exactly_at_the_end_needs_no_pad(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	static const uint32_t t[] = { 1024, 1024, 1024, 960 };   /* to 4096 - 64 */
	advance_to(h, &p, &c, t, 4);
	uint8_t *d = ring_data(h);
	assert_ptr_equal(put(&p, 1, plen_for(64)), d + CAP - 64);
	assert_ptr_equal(put(&p, 2, plen_for(64)), d);
	ring_publish(&p);
	const struct rec_hdr *r = peek(&c);
	check(r, 1, plen_for(64));
	ring_cons_advance(&c, 64);
	check(peek(&c), 2, plen_for(64));
	free(h);
}

/* Space is reused only below `released`, never below `tail` alone. */
static void test_full_ring_returns_null_until_released_moves(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	for (int i = 0; i < 4; i++)
		assert_non_null(put(&p, (uint64_t)i + 1, plen_for(1024)));
	uint64_t head = p.head;
	assert_null(put(&p, 5, 0));
	assert_int_equal(p.head, head);        /* a refused reserve moves nothing */
	ring_publish(&p);
	for (int i = 0; i < 4; i++) {
		const struct rec_hdr *r = peek(&c);
		check(r, (uint64_t)i + 1, plen_for(1024));
		ring_cons_advance(&c, rec_total(r));
	}
	shm_store_release(&h->tail, c.pos);   /* written, not yet durable */
	assert_null(put(&p, 5, 0));
	shm_store_release(&h->released, 1024);
	assert_non_null(put(&p, 5, plen_for(1024)));
	assert_null(put(&p, 6, 0));
	shm_store_release(&h->released, 4096);
	assert_non_null(put(&p, 6, 0));
	ring_publish(&p);
	check(peek(&c), 5, plen_for(1024));
	free(h);
}

/* The bytes skipped at the end count against the free space. */
static void test_full_check_counts_the_skip(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	for (int i = 0; i < 3; i++)
		assert_non_null(put(&p, (uint64_t)i, plen_for(1024)));
	assert_non_null(put(&p, 3, plen_for(992)));   /* head at 4064: 32 to the end */
	ring_publish(&p);
	/* 64 bytes free in all, but a 48-byte record needs 32 + 48 */
	shm_store_release(&h->released, 32);
	assert_null(put(&p, 4, plen_for(48)));
	shm_store_release(&h->released, 48);
	assert_ptr_equal(put(&p, 4, plen_for(48)), ring_data(h));
	assert_int_equal(p.head, CAP + 48);
	free(h);
}

static void test_corrupted_record_is_ebadmsg(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	struct rec_hdr *r = put(&p, 1, 100);
	assert_non_null(put(&p, 2, 100));
	ring_publish(&p);
	static const uint8_t bad_types[] = { 0, REC_TYPE_MAX, 9, 0xff };
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		r->type = bad_types[i];
		assert_int_equal(peek_err(&c), -EBADMSG);
	}
	r->type = REC_DATA;
	uint32_t plen = r->plen;
	r->plen = 0x7fffff00;                  /* beyond the end of the data */
	assert_int_equal(peek_err(&c), -EBADMSG);
	r->plen = plen + 2 * rec_size(ID_LEN, 100);   /* within the ring, past head */
	assert_int_equal(peek_err(&c), -EBADMSG);
	r->plen = plen;
	check(peek(&c), 1, 100);
	free(h);
}

static void test_corrupted_pad_is_ebadmsg(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	static const uint32_t t[] = { 1024, 1024, 1024, 824 };
	advance_to(h, &p, &c, t, 4);
	assert_non_null(put(&p, 7, plen_for(256)));
	ring_publish(&p);
	struct rec_hdr *pad = (struct rec_hdr *)(void *)(ring_data(h) + CAP - 200);
	pad->plen -= 8;
	assert_int_equal(peek_err(&c), -EBADMSG);
	pad->plen += 16;
	assert_int_equal(peek_err(&c), -EBADMSG);
	pad->plen -= 8;
	check(peek(&c), 7, plen_for(256));
	free(h);
}

static void test_consumer_resumes_at_a_record_position(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	uint64_t pos[10];
	ring_prod_attach(&p, h);
	for (int i = 0; i < 10; i++) {
		pos[i] = p.head;
		assert_non_null(put(&p, (uint64_t)i, (uint32_t)i * 13));
	}
	ring_publish(&p);
	for (int i = 0; i < 10; i++) {
		ring_cons_attach(&c, h, pos[i]);
		check(peek(&c), (uint64_t)i, (uint32_t)i * 13);
	}
	free(h);
}

/* A restarted producer resumes at the published head: what it had reserved
 * but not published is gone and its space reused. */
static void test_producer_reattach_resumes_at_published_head(void **state)
{
	(void)state;
	struct ring_hdr *h = ring_new(CAP);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	assert_non_null(put(&p, 1, 8));
	uint64_t pub = ring_publish(&p);
	struct rec_hdr *lost = put(&p, 2, 8);
	ring_prod_attach(&p, h);
	assert_int_equal(p.head, pub);
	assert_ptr_equal(put(&p, 3, 8), lost);
	ring_publish(&p);
	const struct rec_hdr *r = peek(&c);
	check(r, 1, 8);
	ring_cons_advance(&c, rec_total(r));
	check(peek(&c), 3, 8);
	free(h);
}

/* Many records of random sizes through a small ring, producer and consumer
 * interleaved at random; every wrap case must occur. */
static void test_random_interleaving_through_small_ring(void **state)
{
	(void)state;
	const uint64_t cap = 8192;
	struct ring_hdr *h = ring_new(cap);
	struct ring_prod p;
	struct ring_cons c;
	ring_prod_attach(&p, h);
	ring_cons_attach(&c, h, 0);
	uint64_t x = 42, next_put = 1, next_get = 1, pads = 0, skips = 0, fulls = 0;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
	while (next_get < 200000) {
		int nput = (int)(RND() % 8);
		for (int i = 0; i < nput; i++) {
			uint32_t plen = (uint32_t)(RND() % 1900);
			uint64_t off = p.head & (cap - 1), n = rec_size(ID_LEN, plen);
			if (!put(&p, next_put, plen)) {
				fulls++;
				break;
			}
			if (cap - off < n && cap - off >= REC_HDR_LEN)
				pads++;
			else if (cap - off < n)
				skips++;
			next_put++;
		}
		ring_publish(&p);
		int nget = (int)(RND() % 8);
		const struct rec_hdr *r;
		for (int i = 0; i < nget && (r = peek(&c)); i++) {
			check(r, next_get, r->plen);
			ring_cons_advance(&c, rec_total(r));
			next_get++;
		}
		if (RND() % 2)
			release_to(h, c.pos);
	}
#undef RND
	assert_true(pads > 100);
	assert_true(skips > 10);
	assert_true(fulls > 100);
	free(h);
}

/* ---- two processes over a real shm region ---- */

#define STRESS_MAX 2000000ull
#define STRESS_NS (3ull * 1000000000ull)      /* producer stops after this */
#define STRESS_LIMIT_NS (60ull * 1000000000ull)
#define WAIT_NS (2ull * 1000000000ull)         /* a timeout means a lost wake-up */
#define STRESS_RING (256u << 10)
#define SID "stress-device:01"
#define SID_LEN 16

static const struct shm_geom stress_geom = { .nrings = 1, .ndevices = 16, .ring_bytes = STRESS_RING };

struct stress {
	char inst[64];
	shm_region_t reg;
	pid_t child;
};

static uint32_t stress_plen(uint64_t seq)
{
	uint64_t v = seq * 0x9E3779B97F4A7C15ull;
	v ^= v >> 29;
	if ((v & 63) == 0)
		return (uint32_t)(v >> 40) % 16384;
	return (uint32_t)(v >> 40) % 300;
}

static void stress_payload(uint64_t seq, uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = pat(seq, i);
}

/* Reserves n bytes, publishing and waiting for space when full.  NULL on a
 * wait that timed out or the overall limit. */
static void *stress_reserve(struct shm_ctl *ctl, struct ring_prod *p, uint32_t n, uint64_t limit,
			    unsigned *timeouts)
{
	for (;;) {
		void *dst = ring_reserve(p, n);
		if (dst)
			return dst;
		ring_publish(p);
		futex_seq_signal(&ctl->work);
		uint32_t seen = futex_seq_enter(&ctl->durable);
		dst = ring_reserve(p, n);
		if (dst) {
			futex_seq_leave(&ctl->durable);
			return dst;
		}
		if (futex_seq_wait(&ctl->durable, seen, WAIT_NS) == -ETIMEDOUT)
			(*timeouts)++;
		if (clock_mono_ns() > limit)
			return NULL;
	}
}

/* The child: attaches on its own (a second mapping of the same object) and
 * produces.  Exit status: 0 ok, else the reason. */
static int stress_producer(const char *inst)
{
	shm_region_t r;
	char err[SHM_ERR_LEN];
	if (shm_open_region(inst, &stress_geom, 0, &r, err) < 0) {
		fprintf(stderr, "child: %s\n", err);
		return 10;
	}
	struct shm_ctl *ctl = r.ctl;
	struct ring_prod p;
	ring_prod_attach(&p, shm_ring_hdr(ctl, 0));
	static uint8_t pl[16384];
	uint64_t t0 = clock_mono_ns(), seq = 0;
	unsigned batch = 0, timeouts = 0;
	while (seq < STRESS_MAX) {
		if ((seq & 1023) == 0 && clock_mono_ns() - t0 > STRESS_NS)
			break;
		uint64_t s = seq + 1;
		uint32_t n = stress_plen(s);
		void *dst = stress_reserve(ctl, &p, rec_size(SID_LEN, n), t0 + STRESS_LIMIT_NS, &timeouts);
		if (!dst)
			return 11;
		stress_payload(s, pl, n);
		rec_build_data(dst, (const uint8_t *)SID, SID_LEN, 7, 3, s, s * 10, s * 20, pl, n,
			       mi_crc32(pl, n));
		seq = s;
		if (++batch == 32) {
			ring_publish(&p);
			futex_seq_signal(&ctl->work);
			batch = 0;
		}
	}
	/* the end: a MARK whose one position is the count */
	void *dst = stress_reserve(ctl, &p, rec_size(0, REC_MARK_PLEN(1)), t0 + STRESS_LIMIT_NS, &timeouts);
	if (!dst)
		return 11;
	rec_build_mark(dst, ctl->shm_id, 1, &seq, 0, NULL);
	ring_publish(&p);
	futex_seq_signal(&ctl->work);
	shm_close_region(&r);
	if (timeouts) {
		fprintf(stderr, "child: %u futex waits timed out\n", timeouts);
		return 12;
	}
	return 0;
}

static int stress_setup(void **state)
{
	struct stress *s = calloc(1, sizeof(*s));
	char err[SHM_ERR_LEN];
	if (!s)
		return -1;
	snprintf(s->inst, sizeof(s->inst), "test-ring-%d", (int)getpid());
	shm_unlink_instance(s->inst);
	if (shm_open_region(s->inst, &stress_geom, 1, &s->reg, err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(s);
		return -1;
	}
	*state = s;
	return 0;
}

static int stress_teardown(void **state)
{
	struct stress *s = *state;
	if (s->child > 0) {
		kill(s->child, SIGKILL);
		waitpid(s->child, NULL, 0);
	}
	shm_close_region(&s->reg);
	int r = shm_unlink_instance(s->inst);
	free(s);
	return r;
}

static void stress_release(struct shm_ctl *ctl, struct ring_hdr *h, uint64_t pos)
{
	shm_store_release(&h->tail, pos);
	shm_store_release(&h->released, pos);
	futex_seq_signal(&ctl->durable);
}

static void test_two_process_stress(void **state)
{
	struct stress *s = *state;
	struct shm_ctl *ctl = s->reg.ctl;
	assert_true(s->reg.created);
	struct ring_hdr *h = shm_ring_hdr(ctl, 0);
	assert_int_equal(h->cap, STRESS_RING);
	fflush(NULL);
	s->child = fork();
	assert_true(s->child >= 0);
	if (s->child == 0)
		_exit(stress_producer(s->inst));

	static uint8_t want[16384];
	struct ring_cons c;
	ring_cons_attach(&c, h, 0);
	uint64_t expect = 1, released = 0, t0 = clock_mono_ns();
	unsigned timeouts = 0, waits = 0;
	for (;;) {
		uint64_t head = shm_load_acquire(&h->head);
		int err = 1;
		const struct rec_hdr *r = ring_cons_peek(&c, head, &err);
		assert_int_equal(err, 0);
		if (!r) {
			if (c.pos != released)
				stress_release(ctl, h, released = c.pos);
			uint32_t seen = futex_seq_enter(&ctl->work);
			if (shm_load_acquire(&h->head) != head) {
				futex_seq_leave(&ctl->work);
				continue;
			}
			waits++;
			if (futex_seq_wait(&ctl->work, seen, WAIT_NS) == -ETIMEDOUT)
				timeouts++;
			assert_true(clock_mono_ns() - t0 < STRESS_LIMIT_NS);
			continue;
		}
		assert_int_equal(rec_crc(r), r->crc);
		if (r->type == REC_MARK) {
			assert_int_equal(rec_mark_shm_id(r), ctl->shm_id);
			assert_int_equal(rec_mark_nrings(r), 1);
			assert_int_equal(rec_mark_pos(r, 0), expect - 1);
			ring_cons_advance(&c, rec_total(r));
			break;
		}
		assert_int_equal(r->type, REC_DATA);
		assert_int_equal(r->seq, expect);
		uint32_t n = stress_plen(expect);
		assert_int_equal(r->plen, n);
		assert_int_equal(r->id_len, SID_LEN);
		assert_memory_equal(rec_id(r), SID, SID_LEN);
		assert_int_equal(r->ts_ns, expect * 10);
		assert_int_equal(r->srv_ns, expect * 20);
		stress_payload(expect, want, n);
		if (n)
			assert_memory_equal(rec_payload(r), want, n);
		ring_cons_advance(&c, rec_total(r));
		expect++;
		if (c.pos - released >= (64u << 10))
			stress_release(ctl, h, released = c.pos);
	}
	stress_release(ctl, h, c.pos);
	assert_int_equal(c.pos, shm_load_acquire(&h->head));

	int st = 0;
	assert_int_equal(waitpid(s->child, &st, 0), s->child);
	s->child = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(timeouts, 0);
	/* enough records to have wrapped the ring many times */
	assert_true(c.pos > 20ull * STRESS_RING);
	printf("  stress: %llu records, %llu MiB through a %u KiB ring, %u consumer waits\n",
	       (unsigned long long)(expect - 1), (unsigned long long)(c.pos >> 20), STRESS_RING >> 10,
	       waits);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reserve_publish_peek_advance_in_order),
		cmocka_unit_test(test_consumer_sees_nothing_before_publish),
		cmocka_unit_test(test_wrap_with_pad),
		cmocka_unit_test(test_wrap_with_bare_skip_under_40_bytes),
		cmocka_unit_test(test_record_ending_exactly_at_the_end_needs_no_pad),
		cmocka_unit_test(test_full_ring_returns_null_until_released_moves),
		cmocka_unit_test(test_full_check_counts_the_skip),
		cmocka_unit_test(test_corrupted_record_is_ebadmsg),
		cmocka_unit_test(test_corrupted_pad_is_ebadmsg),
		cmocka_unit_test(test_consumer_resumes_at_a_record_position),
		cmocka_unit_test(test_producer_reattach_resumes_at_published_head),
		cmocka_unit_test(test_random_interleaving_through_small_ring),
		cmocka_unit_test_setup_teardown(test_two_process_stress, stress_setup, stress_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
