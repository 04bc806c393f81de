/* test_record — WAL/ring record building and checksums (common/record.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/record.h"

static uint64_t rng_state = 0x1234567887654321ull;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

#define CANARY 0xEE
#define FILL 0xAA

static void test_layout_matches_the_documented_offsets(void **state)
{
	(void)state;
	assert_int_equal(offsetof(struct rec_hdr, crc), 0);
	assert_int_equal(offsetof(struct rec_hdr, plen), 4);
	assert_int_equal(offsetof(struct rec_hdr, type), 8);
	assert_int_equal(offsetof(struct rec_hdr, id_len), 9);
	assert_int_equal(offsetof(struct rec_hdr, topic), 10);
	assert_int_equal(offsetof(struct rec_hdr, slot), 12);
	assert_int_equal(offsetof(struct rec_hdr, seq), 16);
	assert_int_equal(offsetof(struct rec_hdr, ts_ns), 24);
	assert_int_equal(offsetof(struct rec_hdr, srv_ns), 32);
	assert_int_equal(sizeof(struct rec_hdr), REC_HDR_LEN);
}

static void test_rec_size_rounds_to_8(void **state)
{
	(void)state;
	assert_int_equal(rec_size(0, 0), 40);
	assert_int_equal(rec_size(1, 0), 48);
	assert_int_equal(rec_size(0, 8), 48);
	assert_int_equal(rec_size(3, 5), 48);
	assert_int_equal(rec_size(3, 6), 56);
	assert_int_equal(rec_size(64, 65536), 40 + 64 + 65536);
	for (uint32_t id = 0; id <= 64; id++)
		for (uint32_t pl = 0; pl < 40; pl++) {
			uint32_t s = rec_size(id, pl);
			assert_int_equal(s % 8, 0);
			assert_true(s >= 40 + id + pl && s < 40 + id + pl + 8);
		}
}

/* Builds a random DATA record in a buffer with FILL before and CANARY after
 * its end, checks every field, the CRC both ways and the zeroed padding. */
static void build_and_check(uint8_t id_len, uint32_t plen)
{
	uint8_t id[64], *pl = malloc(plen ? plen : 1);
	assert_non_null(pl);
	for (int i = 0; i < id_len; i++)
		id[i] = (uint8_t)('a' + (rng_next() % 26));
	for (uint32_t i = 0; i < plen; i++)
		pl[i] = (uint8_t)rng_next();
	uint32_t total = rec_size(id_len, plen);
	uint8_t *buf = malloc(total + 16);
	assert_non_null(buf);
	memset(buf, FILL, total);
	memset(buf + total, CANARY, 16);
	uint16_t topic = (uint16_t)rng_next();
	uint32_t slot = (uint32_t)rng_next();
	uint64_t seq = rng_next(), ts = rng_next(), srv = rng_next();
	rec_build_data(buf, id, id_len, topic, slot, seq, ts, srv, pl, plen, mi_crc32(pl, plen));

	const struct rec_hdr *h = (const struct rec_hdr *)(void *)buf;
	assert_int_equal(h->type, REC_DATA);
	assert_int_equal(h->plen, plen);
	assert_int_equal(h->id_len, id_len);
	assert_int_equal(h->topic, topic);
	assert_int_equal(h->slot, slot);
	assert_int_equal(h->seq, seq);
	assert_int_equal(h->ts_ns, ts);
	assert_int_equal(h->srv_ns, srv);
	assert_int_equal(rec_total(h), total);
	if (id_len)
		assert_memory_equal(rec_id(h), id, id_len);
	if (plen)
		assert_memory_equal(rec_payload(h), pl, plen);
	/* crc = crc32(bytes 4 .. end of payload), whichever way computed */
	assert_int_equal(h->crc, mi_crc32(buf + 4, REC_HDR_LEN - 4 + id_len + plen));
	assert_int_equal(h->crc, rec_crc(h));
	assert_int_equal(rec_crc_with(h, mi_crc32(pl, plen)), rec_crc(h));
	/* padding zeroed, nothing written past the record */
	for (uint32_t i = REC_HDR_LEN + id_len + plen; i < total; i++)
		assert_int_equal(buf[i], 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(buf[total + i], CANARY);
	free(buf);
	free(pl);
}

static void test_build_data_fields_crc_and_padding(void **state)
{
	(void)state;
	for (uint8_t id = 0; id <= 64; id++)
		for (uint32_t pl = 0; pl < 24; pl++)
			build_and_check(id, pl);
	for (int i = 0; i < 300; i++)
		build_and_check((uint8_t)(rng_next() % 65), (uint32_t)(rng_next() % 70000));
}

static void test_crc_with_equals_crc(void **state)
{
	(void)state;
	uint8_t buf[REC_HDR_LEN + 64 + 5000];
	for (int i = 0; i < 2000; i++) {
		struct rec_hdr *h = (struct rec_hdr *)(void *)buf;
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (uint8_t)rng_next();
		h->id_len = (uint8_t)(rng_next() % 65);
		h->plen = (uint32_t)(rng_next() % 5000);
		assert_int_equal(rec_crc_with(h, mi_crc32(rec_payload(h), h->plen)), rec_crc(h));
	}
}

/* The crc covers every byte from 4 to the end of the payload (single-byte
 * changes are always caught by a CRC-32), and not the padding. */
static void test_crc_covers_header_id_payload_not_padding(void **state)
{
	(void)state;
	uint8_t id[5] = { 'd', 'e', 'v', '-', '1' };
	uint8_t pl[6] = { 1, 2, 3, 4, 5, 6 };
	uint32_t total = rec_size(5, 6);
	uint8_t buf[64];
	assert_true(total <= sizeof(buf));
	rec_build_data(buf, id, 5, 3, 4, 5, 6, 7, pl, 6, mi_crc32(pl, 6));
	struct rec_hdr *h = (struct rec_hdr *)(void *)buf;
	uint32_t crc = h->crc;
	uint32_t end = REC_HDR_LEN + 5 + 6;
	for (uint32_t i = 4; i < total; i++) {
		if (i < 8 || i == 9)       /* plen, id_len: changing them moves the end */
			continue;
		buf[i] ^= 0x01;
		if (i < end)
			assert_int_not_equal(rec_crc(h), crc);
		else
			assert_int_equal(rec_crc(h), crc);
		buf[i] ^= 0x01;
	}
	assert_int_equal(rec_crc(h), crc);
}

static void test_mark_build_and_parse(void **state)
{
	(void)state;
	static const uint32_t counts[] = { 0, 1, 3, 16 };
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		uint32_t n = counts[k];
		uint64_t pos[16];
		for (uint32_t i = 0; i < n; i++)
			pos[i] = rng_next();
		uint64_t shm_id = rng_next(), srv = rng_next();
		uint32_t total = rec_size(0, REC_MARK_PLEN(n));
		struct rec_mark_bind b = { .lsn = rng_next(), .nrec = (uint32_t)rng_next(),
					   .digest = (uint32_t)rng_next(), .prev = (uint32_t)rng_next() }, got;
		_Alignas(8) uint8_t buf[REC_MARK_MAX_LEN + 16];
		memset(buf, FILL, total);
		memset(buf + total, CANARY, 16);
		rec_build_mark(buf, shm_id, n, pos, srv, &b);
		const struct rec_hdr *h = (const struct rec_hdr *)(void *)buf;
		assert_int_equal(h->type, REC_MARK);
		assert_int_equal(h->id_len, 0);
		assert_int_equal(h->topic, 0);
		assert_int_equal(h->slot, 0);
		assert_int_equal(h->seq, 0);
		assert_int_equal(h->ts_ns, 0);
		assert_int_equal(h->srv_ns, srv);
		assert_int_equal(h->plen, 32 + 8 * n);
		assert_int_equal(rec_total(h), total);
		assert_int_equal(total, 72 + 8 * n);     /* no padding: the trailer ends the record */
		assert_int_equal(rec_mark_shm_id(h), shm_id);
		assert_int_equal(rec_mark_nrings(h), n);
		assert_int_equal(mi_get32(rec_payload(h) + 12), b.nrec);
		for (uint32_t i = 0; i < n; i++)
			assert_int_equal(rec_mark_pos(h, i), pos[i]);
		/* the binding: lsn, digest, prev, the last 16 bytes */
		assert_int_equal(mi_get64(buf + total - 16), b.lsn);
		assert_int_equal(mi_get32(buf + total - 8), b.digest);
		assert_int_equal(mi_get32(buf + total - 4), b.prev);
		rec_mark_bind(h, &got);
		assert_int_equal(got.lsn, b.lsn);
		assert_int_equal(got.nrec, b.nrec);
		assert_int_equal(got.digest, b.digest);
		assert_int_equal(got.prev, b.prev);
		assert_int_equal(h->crc, rec_crc(h));
		assert_int_equal(rec_crc_with(h, mi_crc32(rec_payload(h), h->plen)), h->crc);
		for (uint32_t i = REC_HDR_LEN + h->plen; i < total; i++)
			assert_int_equal(buf[i], 0);
		for (int i = 0; i < 16; i++)
			assert_int_equal(buf[total + i], CANARY);
		/* payload is little-endian on the wire */
		assert_int_equal(rec_payload(h)[0], (uint8_t)shm_id);
		assert_int_equal(rec_payload(h)[7], (uint8_t)(shm_id >> 56));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_matches_the_documented_offsets),
		cmocka_unit_test(test_rec_size_rounds_to_8),
		cmocka_unit_test(test_build_data_fields_crc_and_padding),
		cmocka_unit_test(test_crc_with_equals_crc),
		cmocka_unit_test(test_crc_covers_header_id_payload_not_padding),
		cmocka_unit_test(test_mark_build_and_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
