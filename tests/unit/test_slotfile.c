/* test_slotfile — the two-slot torn-write-proof file (common/slotfile.h)
 * and flusherd's data/meta on top of it (meta_store/meta_load, flusherd/ckpt.h).
 *
 * Torn writes are simulated by damaging the slot a write went to: flipped
 * bytes, a truncated file, a zeroed slot.  Each test gets its own temp dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/frame.h"
#include "common/slotfile.h"
#include "flusherd/ckpt.h"

#define MAGIC 0x54534554u        /* "TEST" */
#define META_MAGIC 0x544d494du   /* "MIMT", as flusherd/ckpt.c */

struct fix {
	char dir[64];
	char path[128];   /* dir/sf */
	char meta[128];   /* dir/meta */
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-slotfile-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/sf", f->dir);
	snprintf(f->meta, sizeof(f->meta), "%s/meta", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static off_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void xor_byte(const char *path, off_t off, uint8_t x)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= x;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void zero_slot(const char *path, int slot)
{
	uint8_t z[SLOTFILE_SLOT];
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	memset(z, 0, sizeof(z));
	assert_int_equal(pwrite(fd, z, sizeof(z), (off_t)slot * SLOTFILE_SLOT), SLOTFILE_SLOT);
	close(fd);
}

static void truncate_to(const char *path, off_t len)
{
	assert_int_equal(truncate(path, len), 0);
}

/* The generation stored in a slot, read raw (0 for a short file). */
static uint64_t slot_gen(const char *path, int slot)
{
	uint8_t b[8];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = pread(fd, b, 8, (off_t)slot * SLOTFILE_SLOT + 8);
	close(fd);
	return n == 8 ? mi_get64(b) : 0;
}

static void write_str(const char *path, const char *s)
{
	struct slotfile f;
	assert_int_equal(slotfile_open(&f, path, MAGIC), 0);
	char tmp[SLOTFILE_MAX];
	(void)slotfile_read(&f, tmp, sizeof(tmp));    /* learn the newest slot, as callers do */
	assert_int_equal(slotfile_write(&f, s, strlen(s)), 0);
	slotfile_close(&f);
}

/* Reads the file afresh; returns the length or the error, text in out. */
static int read_str(const char *path, char *out, size_t cap)
{
	struct slotfile f;
	assert_int_equal(slotfile_open(&f, path, MAGIC), 0);
	memset(out, 0, cap);
	int r = slotfile_read(&f, out, cap - 1);
	slotfile_close(&f);
	return r;
}

static void test_new_file_reads_enoent_then_round_trips(void **state)
{
	struct fix *f = *state;
	struct slotfile sf;
	char buf[64];
	assert_int_equal(slotfile_open(&sf, f->path, MAGIC), 0);
	assert_int_equal(slotfile_read(&sf, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(slotfile_write(&sf, "hello", 5), 0);
	assert_int_equal(sf.gen, 1);
	assert_int_equal(sf.slot, 0);
	/* the same handle reads back what it wrote */
	assert_int_equal(slotfile_read(&sf, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	slotfile_close(&sf);
	assert_int_equal(sf.fd, -1);
	slotfile_close(&sf);                    /* twice is harmless */
	assert_int_equal(file_size(f->path), SLOTFILE_SLOT);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "hello");
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_newest_generation_wins(void **state)
{
	struct fix *f = *state;
	char buf[64];
	write_str(f->path, "first");
	write_str(f->path, "second");
	write_str(f->path, "third");
	/* writes alternate slots: 0, 1, 0 */
	assert_int_equal(file_size(f->path), 2 * SLOTFILE_SLOT);
	assert_int_equal(slot_gen(f->path, 0), 3);
	assert_int_equal(slot_gen(f->path, 1), 2);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "third");
	write_str(f->path, "fourth");
	assert_int_equal(slot_gen(f->path, 1), 4);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 6);
	assert_string_equal(buf, "fourth");
}

static void test_one_handle_keeps_alternating_slots(void **state)
{
	struct fix *f = *state;
	struct slotfile sf;
	char buf[16];
	assert_int_equal(slotfile_open(&sf, f->path, MAGIC), 0);
	for (int i = 1; i <= 5; i++) {
		snprintf(buf, sizeof(buf), "v%d", i);
		assert_int_equal(slotfile_write(&sf, buf, strlen(buf)), 0);
		assert_int_equal(sf.gen, i);
		assert_int_equal(sf.slot, (i - 1) & 1);
	}
	slotfile_close(&sf);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "v5");
	/* the older copy is one write behind */
	zero_slot(f->path, 0);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "v4");
}

/* A write torn anywhere in the slot (header, payload, padding, crc) loses
 * only that write. */
static void test_corrupt_newest_slot_falls_back_to_previous_copy(void **state)
{
	struct fix *f = *state;
	static const off_t where[] = { 0, 4, 8, 15, 16, 20, 100, SLOTFILE_SLOT - 5, SLOTFILE_SLOT - 1 };
	char buf[64];
	write_str(f->path, "old copy");
	write_str(f->path, "new copy");       /* slot 1 */
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		xor_byte(f->path, SLOTFILE_SLOT + where[i], 0x01);
		assert_int_equal(read_str(f->path, buf, sizeof(buf)), 8);
		assert_string_equal(buf, "old copy");
		xor_byte(f->path, SLOTFILE_SLOT + where[i], 0x01);
		assert_int_equal(read_str(f->path, buf, sizeof(buf)), 8);
		assert_string_equal(buf, "new copy");
	}
}

static void test_truncated_newest_slot_falls_back_to_previous_copy(void **state)
{
	struct fix *f = *state;
	char buf[64];
	write_str(f->path, "old copy");
	write_str(f->path, "new copy");
	truncate_to(f->path, SLOTFILE_SLOT + 100);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 8);
	assert_string_equal(buf, "old copy");
	truncate_to(f->path, SLOTFILE_SLOT);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 8);
	assert_string_equal(buf, "old copy");
}

static void test_zeroed_newest_slot_falls_back_to_previous_copy(void **state)
{
	struct fix *f = *state;
	char buf[64];
	write_str(f->path, "A");
	write_str(f->path, "B");
	write_str(f->path, "C");              /* slot 0, gen 3 */
	zero_slot(f->path, 0);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "B");
}

/* After a fallback the next write replaces the damaged slot, never the
 * copy that just saved us. */
static void test_write_after_fallback_keeps_the_surviving_copy(void **state)
{
	struct fix *f = *state;
	char buf[64];
	write_str(f->path, "good");           /* slot 0, gen 1 */
	write_str(f->path, "torn");           /* slot 1, gen 2 */
	xor_byte(f->path, SLOTFILE_SLOT + 17, 0xff);
	write_str(f->path, "next");           /* must go to slot 1 */
	assert_int_equal(slot_gen(f->path, 0), 1);
	assert_int_equal(slot_gen(f->path, 1), 2);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "next");
	/* that write torn too: "good" is still there */
	xor_byte(f->path, SLOTFILE_SLOT + 17, 0xff);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "good");
}

static void test_both_slots_bad_is_enoent(void **state)
{
	struct fix *f = *state;
	char buf[64];
	write_str(f->path, "one");
	write_str(f->path, "two");
	xor_byte(f->path, 20, 0x40);
	xor_byte(f->path, SLOTFILE_SLOT + 20, 0x40);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), -ENOENT);
	zero_slot(f->path, 0);
	truncate_to(f->path, SLOTFILE_SLOT + 10);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), -ENOENT);
	truncate_to(f->path, 0);
	assert_int_equal(read_str(f->path, buf, sizeof(buf)), -ENOENT);
}

static void test_other_magic_is_not_a_valid_copy(void **state)
{
	struct fix *f = *state;
	struct slotfile sf;
	char buf[64];
	write_str(f->path, "mine");
	assert_int_equal(slotfile_open(&sf, f->path, MAGIC + 1), 0);
	assert_int_equal(slotfile_read(&sf, buf, sizeof(buf)), -ENOENT);
	slotfile_close(&sf);
}

static void test_payload_size_limit(void **state)
{
	struct fix *f = *state;
	struct slotfile sf;
	static uint8_t big[SLOTFILE_MAX + 1], back[SLOTFILE_MAX + 1];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(slotfile_open(&sf, f->path, MAGIC), 0);
	assert_int_equal(slotfile_write(&sf, big, SLOTFILE_MAX + 1), -EOVERFLOW);
	assert_int_equal(sf.gen, 0);              /* a refused write changes nothing */
	assert_int_equal(file_size(f->path), 0);
	assert_int_equal(slotfile_write(&sf, big, SLOTFILE_MAX), 0);
	assert_int_equal(slotfile_read(&sf, back, sizeof(back)), SLOTFILE_MAX);
	assert_memory_equal(back, big, SLOTFILE_MAX);
	/* a buffer too small for the copy is refused, not overrun */
	assert_int_equal(slotfile_read(&sf, back, SLOTFILE_MAX - 1), -EOVERFLOW);
	/* an empty payload is a valid copy */
	assert_int_equal(slotfile_write(&sf, big, 0), 0);
	assert_int_equal(slotfile_read(&sf, back, sizeof(back)), 0);
	slotfile_close(&sf);
}

static struct meta meta_make(uint64_t ckpt, uint32_t nrings)
{
	struct meta m;
	memset(&m, 0, sizeof(m));
	m.nrings = nrings;
	m.log_id = 0x1122334455667788ull;
	m.ckpt_lsn = ckpt;
	m.shm_id = 0xabcdef0012345678ull ^ ckpt;
	for (uint32_t i = 0; i < nrings; i++)
		m.pos[i] = ckpt * 10 + i;
	return m;
}

static void assert_meta_equal(const struct meta *a, const struct meta *b)
{
	assert_int_equal(a->nrings, b->nrings);
	assert_int_equal(a->log_id, b->log_id);
	assert_int_equal(a->ckpt_lsn, b->ckpt_lsn);
	assert_int_equal(a->shm_id, b->shm_id);
	for (uint32_t i = 0; i < a->nrings; i++)
		assert_int_equal(a->pos[i], b->pos[i]);
}

static void test_meta_round_trip(void **state)
{
	struct fix *f = *state;
	struct meta m = meta_make(4096, SHM_MAX_RINGS), got;
	assert_int_equal(meta_load(f->dir, &got), -ENOENT);
	assert_int_equal(meta_store(f->dir, &m), 0);
	memset(&got, 0x5a, sizeof(got));
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m);
	for (uint32_t i = m.nrings; i < SHM_MAX_RINGS; i++)
		assert_int_equal(got.pos[i], 0);
	m = meta_make(8192, 2);
	assert_int_equal(meta_store(f->dir, &m), 0);
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m);
	for (uint32_t i = 2; i < SHM_MAX_RINGS; i++)
		assert_int_equal(got.pos[i], 0);
}

/* The slot holding the newest meta is torn: the older meta comes back whole,
 * and the next store overwrites the torn slot, not the survivor. */
static void test_meta_torn_newest_returns_older_intact(void **state)
{
	struct fix *f = *state;
	struct meta m1 = meta_make(1000, 3), m2 = meta_make(2000, 3), m3 = meta_make(3000, 3), got;
	assert_int_equal(meta_store(f->dir, &m1), 0);
	assert_int_equal(meta_store(f->dir, &m2), 0);
	int newest = 1;                          /* stores go to slots 0, 1, ... */
	assert_int_equal(slot_gen(f->meta, newest), 2);
	/* flip a byte inside the stored ckpt_lsn of the newest copy */
	xor_byte(f->meta, (off_t)newest * SLOTFILE_SLOT + 16 + 16, 0x80);
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m1);
	assert_int_equal(meta_store(f->dir, &m3), 0);
	assert_int_equal(slot_gen(f->meta, !newest), 1);       /* m1 untouched */
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m3);
	/* m3 torn in turn (truncated, or zeroed): still m1 */
	zero_slot(f->meta, 1);
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m1);
	truncate_to(f->meta, SLOTFILE_SLOT + 64);
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_meta_equal(&got, &m1);
}

static void test_meta_with_no_valid_copy_is_ebadmsg(void **state)
{
	struct fix *f = *state;
	struct meta m = meta_make(1, 1), got;
	assert_int_equal(meta_store(f->dir, &m), 0);
	assert_int_equal(meta_store(f->dir, &m), 0);
	xor_byte(f->meta, 30, 1);
	xor_byte(f->meta, SLOTFILE_SLOT + 30, 1);
	assert_int_equal(meta_load(f->dir, &got), -EBADMSG);
}

/* Valid slots holding an impossible meta payload are refused. */
static void test_meta_impossible_payload_is_ebadmsg(void **state)
{
	struct fix *f = *state;
	struct slotfile sf;
	struct meta got;
	uint8_t b[32 + 8 * (SHM_MAX_RINGS + 1)];
	memset(b, 0, sizeof(b));
	mi_put32(b, 1);
	mi_put32(b + 4, SHM_MAX_RINGS + 1);      /* too many rings */
	assert_int_equal(slotfile_open(&sf, f->meta, META_MAGIC), 0);
	assert_int_equal(slotfile_write(&sf, b, sizeof(b)), 0);
	assert_int_equal(meta_load(f->dir, &got), -EBADMSG);
	mi_put32(b + 4, 4);                      /* 4 rings, payload for 2 */
	assert_int_equal(slotfile_write(&sf, b, 32 + 16), 0);
	assert_int_equal(meta_load(f->dir, &got), -EBADMSG);
	mi_put32(b, 2);                          /* unknown version */
	mi_put32(b + 4, 1);
	assert_int_equal(slotfile_write(&sf, b, 40), 0);
	assert_int_equal(meta_load(f->dir, &got), -EBADMSG);
	assert_int_equal(slotfile_write(&sf, b, 31), 0);   /* too short */
	assert_int_equal(meta_load(f->dir, &got), -EBADMSG);
	mi_put32(b, 1);                          /* and a good one again */
	mi_put64(b + 16, 77);
	assert_int_equal(slotfile_write(&sf, b, 40), 0);
	slotfile_close(&sf);
	assert_int_equal(meta_load(f->dir, &got), 0);
	assert_int_equal(got.nrings, 1);
	assert_int_equal(got.ckpt_lsn, 77);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_new_file_reads_enoent_then_round_trips),
		T(test_newest_generation_wins),
		T(test_one_handle_keeps_alternating_slots),
		T(test_corrupt_newest_slot_falls_back_to_previous_copy),
		T(test_truncated_newest_slot_falls_back_to_previous_copy),
		T(test_zeroed_newest_slot_falls_back_to_previous_copy),
		T(test_write_after_fallback_keeps_the_surviving_copy),
		T(test_both_slots_bad_is_enoent),
		T(test_other_magic_is_not_a_valid_copy),
		T(test_payload_size_limit),
		T(test_meta_round_trip),
		T(test_meta_torn_newest_returns_older_intact),
		T(test_meta_with_no_valid_copy_is_ebadmsg),
		T(test_meta_impossible_payload_is_ebadmsg),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
