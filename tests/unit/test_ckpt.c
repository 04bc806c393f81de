/* test_ckpt — flusherd's device checkpoint, data/devices (flusherd/ckpt.h),
 * written from and read into the device tables of real shm regions.
 *
 * Each test gets two regions (1 ring of 1 MiB, 64 devices): `src` is the
 * table a checkpoint is taken from, `dst` a fresh region it is loaded into,
 * as after a reboot.  (meta_store/meta_load are in test_slotfile.)
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
#include "flusherd/ckpt.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/shm.h"

#define NDEV 64
#define ANY_LSN UINT64_MAX

struct fix {
	char dir[64];
	char path[128];             /* dir/devices */
	char inst[2][64];
	shm_region_t reg[2];
	struct shm_ctl *src, *dst;
};

static const struct shm_geom geom = { .nrings = 1, .ndevices = NDEV, .ring_bytes = 1u << 20 };

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[SHM_ERR_LEN];
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-ckpt-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/devices", f->dir);
	for (int i = 0; i < 2; i++) {
		snprintf(f->inst[i], sizeof(f->inst[i]), "test-ckpt-%d-%d", (int)getpid(), i);
		shm_unlink_instance(f->inst[i]);
		if (shm_open_region(f->inst[i], &geom, 1, &f->reg[i], err) < 0) {
			fprintf(stderr, "%s\n", err);
			return -1;
		}
	}
	f->src = f->reg[0].ctl;
	f->dst = f->reg[1].ctl;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	int r = testdir_remove(f->dir);
	for (int i = 0; i < 2; i++) {
		shm_close_region(&f->reg[i]);
		if (shm_unlink_instance(f->inst[i]) < 0)
			r = -1;
	}
	free(f);
	return r;
}

/* Inserts id with the given seqs; returns its slot. */
static uint32_t dev_set(struct shm_ctl *ctl, const char *id, uint64_t accepted, uint64_t durable)
{
	int s = devtab_insert(ctl, (const uint8_t *)id, (uint8_t)strlen(id));
	assert_true(s >= 0);
	struct shm_dev *d = shm_dev(ctl, (uint32_t)s);
	shm_store_release(&d->last_accepted, accepted);
	shm_store_release(&d->last_durable, durable);
	return (uint32_t)s;
}

static struct shm_dev *dev_get(struct shm_ctl *ctl, const char *id)
{
	int s = devtab_lookup(ctl, (const uint8_t *)id, (uint8_t)strlen(id));
	assert_true(s >= 0);
	return shm_dev(ctl, (uint32_t)s);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, cap);
	close(fd);
	assert_true(n >= 0 && (size_t)n < cap);
	return (size_t)n;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static const char *const ids[] = { "sensor-1", "gw.7", "a", "x:y-z_0",
				   "0123456789012345678901234567890123456789012345678901234567890123" };
#define NIDS (sizeof(ids) / sizeof(ids[0]))

/* src holds every id of ids[] with durable seq 100*(i+1), accepted +5. */
static void fill_src(struct fix *f)
{
	for (size_t i = 0; i < NIDS; i++)
		dev_set(f->src, ids[i], 100 * (i + 1) + 5, 100 * (i + 1));
}

static void test_store_then_load_into_a_fresh_table(void **state)
{
	struct fix *f = *state;
	uint64_t lsn = 0;
	fill_src(f);
	assert_int_equal(devices_store(f->dir, f->src, 123456789), 0);
	assert_int_equal(access(f->path, F_OK), 0);
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s/devices.tmp", f->dir);
	assert_int_equal(access(tmp, F_OK), -1);          /* renamed into place */
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), (int)NIDS);
	assert_int_equal(lsn, 123456789);
	assert_int_equal(devtab_count(f->dst), NIDS);
	for (size_t i = 0; i < NIDS; i++) {
		struct shm_dev *d = dev_get(f->dst, ids[i]);
		assert_int_equal(d->state, DEV_READY);
		assert_int_equal(d->last_durable, 100 * (i + 1));
		/* accepted comes back as the durable seq: what was not durable is
		 * resent by the device */
		assert_int_equal(d->last_accepted, 100 * (i + 1));
	}
}

/* Stored bytes follow the format in ckpt.h. */
static void test_file_layout_matches_the_format(void **state)
{
	struct fix *f = *state;
	uint8_t b[4096];
	dev_set(f->src, "dev", 9, 7);
	assert_int_equal(devices_store(f->dir, f->src, 42), 0);
	size_t n = read_file(f->path, b, sizeof(b));
	assert_int_equal(n, 24 + 1 + 3 + 8);
	assert_memory_equal(b, "MIDEVCK1", 8);
	assert_int_equal(mi_get64(b + 8), 42);
	assert_int_equal(mi_get32(b + 16), 1);
	assert_int_equal(mi_get32(b + 20), mi_crc32(b + 24, n - 24));
	assert_int_equal(b[24], 3);
	assert_memory_equal(b + 25, "dev", 3);
	assert_int_equal(mi_get64(b + 28), 7);
}

static void test_empty_table_round_trips_as_zero(void **state)
{
	struct fix *f = *state;
	uint64_t lsn = 0;
	assert_int_equal(devices_store(f->dir, f->src, 7), 0);
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), 0);
	assert_int_equal(lsn, 7);
	assert_int_equal(devtab_count(f->dst), 0);
}

/* Only READY slots are written: a slot mid-claim is not a device yet. */
static void test_only_ready_devices_are_stored(void **state)
{
	struct fix *f = *state;
	uint64_t lsn;
	dev_set(f->src, "ready", 3, 3);
	uint32_t s = dev_set(f->src, "claiming", 4, 4);
	shm_store_release(&shm_dev(f->src, s)->state, DEV_CLAIMING);
	assert_int_equal(devices_store(f->dir, f->src, 1), 0);
	shm_store_release(&shm_dev(f->src, s)->state, DEV_READY);
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), 1);
	assert_int_equal(devtab_lookup(f->dst, (const uint8_t *)"claiming", 8), -ENOENT);
	assert_int_equal(dev_get(f->dst, "ready")->last_durable, 3);
}

static void test_missing_file_loads_nothing(void **state)
{
	struct fix *f = *state;
	uint64_t lsn = 999;
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), 0);
	assert_int_equal(lsn, 999);                     /* written only on success */
	assert_int_equal(devtab_count(f->dst), 0);
}

/* Loading only raises: a table that already knows more (a restarted
 * flusherd on a live region) keeps it. */
static void test_load_raises_seqs_and_never_lowers(void **state)
{
	struct fix *f = *state;
	uint64_t lsn;
	dev_set(f->src, "ahead", 100, 100);
	dev_set(f->src, "behind", 200, 200);
	dev_set(f->src, "between", 300, 300);
	assert_int_equal(devices_store(f->dir, f->src, 5), 0);
	dev_set(f->dst, "ahead", 600, 500);             /* table newer than the file */
	dev_set(f->dst, "behind", 10, 10);              /* table older */
	dev_set(f->dst, "between", 350, 250);           /* accepted ahead, durable behind */
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), 3);
	struct shm_dev *a = dev_get(f->dst, "ahead"), *b = dev_get(f->dst, "behind"),
		       *c = dev_get(f->dst, "between");
	assert_int_equal(a->last_durable, 500);
	assert_int_equal(a->last_accepted, 600);
	assert_int_equal(b->last_durable, 200);
	assert_int_equal(b->last_accepted, 200);
	assert_int_equal(c->last_durable, 300);
	assert_int_equal(c->last_accepted, 350);
	assert_int_equal(devtab_count(f->dst), 3);
}

/* A load into the table it came from changes nothing. */
static void test_load_into_the_same_table_is_idempotent(void **state)
{
	struct fix *f = *state;
	uint64_t lsn;
	fill_src(f);
	assert_int_equal(devices_store(f->dir, f->src, 11), 0);
	assert_int_equal(devices_load(f->dir, f->src, ANY_LSN, &lsn), (int)NIDS);
	assert_int_equal(devtab_count(f->src), NIDS);
	for (size_t i = 0; i < NIDS; i++) {
		assert_int_equal(dev_get(f->src, ids[i])->last_durable, 100 * (i + 1));
		assert_int_equal(dev_get(f->src, ids[i])->last_accepted, 100 * (i + 1) + 5);
	}
}

/* Any damaged byte of the entries, magic or count is refused (-EBADMSG)
 * and no device of a refused file is half-loaded into the table.  (The lsn
 * field, bytes 8..15, is outside the CRC by the format.) */
static void test_damaged_file_is_ebadmsg(void **state)
{
	struct fix *f = *state;
	uint8_t good[4096], bad[4096];
	uint64_t lsn;
	fill_src(f);
	assert_int_equal(devices_store(f->dir, f->src, 77), 0);
	size_t n = read_file(f->path, good, sizeof(good));
	for (size_t i = 0; i < n; i++) {
		if (i >= 8 && i < 16)
			continue;
		for (int bit = 0; bit < 8; bit += 7) {
			memcpy(bad, good, n);
			bad[i] ^= (uint8_t)(1u << bit);
			write_file(f->path, bad, n);
			int r = devices_load(f->dir, f->dst, ANY_LSN, &lsn);
			if (r != -EBADMSG)
				fail_msg("byte %zu bit %d flipped: devices_load returned %d, not -EBADMSG", i, bit, r);
			if (devtab_count(f->dst) != 0)
				fail_msg("byte %zu bit %d flipped: %u devices loaded from a refused file", i, bit,
					 devtab_count(f->dst));
		}
	}
	write_file(f->path, good, n);
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), (int)NIDS);
}

static void test_truncated_file_is_ebadmsg(void **state)
{
	struct fix *f = *state;
	uint8_t good[4096];
	uint64_t lsn;
	fill_src(f);
	assert_int_equal(devices_store(f->dir, f->src, 77), 0);
	size_t n = read_file(f->path, good, sizeof(good));
	static const size_t lens[] = { 0, 8, 23, 24, 25, 40 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		write_file(f->path, good, lens[i]);
		assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), -EBADMSG);
	}
	write_file(f->path, good, n - 1);
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), -EBADMSG);
}

/* A file with more devices than the table has slots: -ENOSPC, named so by
 * recovery ("more devices than [shm] devices slots"). */
static void test_more_devices_than_slots_is_enospc(void **state)
{
	struct fix *f = *state;
	char err[SHM_ERR_LEN], inst[64];
	shm_region_t small;
	uint64_t lsn;
	struct shm_geom g = { .nrings = 1, .ndevices = 4, .ring_bytes = 4096 };
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		dev_set(f->src, id, 1, 1);
	}
	assert_int_equal(devices_store(f->dir, f->src, 1), 0);
	snprintf(inst, sizeof(inst), "test-ckpt-%d-small", (int)getpid());
	shm_unlink_instance(inst);
	assert_int_equal(shm_open_region(inst, &g, 1, &small, err), 0);
	assert_int_equal(devices_load(f->dir, small.ctl, ANY_LSN, &lsn), -ENOSPC);
	shm_close_region(&small);
	assert_int_equal(shm_unlink_instance(inst), 0);
}

/* A checkpoint taken at an LSN the log no longer reaches (cut by --repair
 * since) knows seqs that are not durable any more: not loaded. */
static void test_checkpoint_past_the_log_end_is_estale(void **state)
{
	struct fix *f = *state;
	uint64_t lsn = 5;
	fill_src(f);
	assert_int_equal(devices_store(f->dir, f->src, 1000), 0);
	assert_int_equal(devices_load(f->dir, f->dst, 999, &lsn), -ESTALE);
	assert_int_equal(lsn, 5);
	assert_int_equal(devtab_count(f->dst), 0);
	assert_int_equal(devices_load(f->dir, f->dst, 1000, &lsn), (int)NIDS);
	assert_int_equal(lsn, 1000);
}

/* A second store replaces the first whole. */
static void test_second_store_replaces_the_first(void **state)
{
	struct fix *f = *state;
	uint64_t lsn;
	dev_set(f->src, "one", 1, 1);
	assert_int_equal(devices_store(f->dir, f->src, 10), 0);
	dev_set(f->src, "one", 2, 2);
	dev_set(f->src, "two", 5, 5);
	assert_int_equal(devices_store(f->dir, f->src, 20), 0);
	assert_int_equal(devices_load(f->dir, f->dst, ANY_LSN, &lsn), 2);
	assert_int_equal(lsn, 20);
	assert_int_equal(dev_get(f->dst, "one")->last_durable, 2);
	assert_int_equal(dev_get(f->dst, "two")->last_durable, 5);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_store_then_load_into_a_fresh_table),
		T(test_file_layout_matches_the_format),
		T(test_empty_table_round_trips_as_zero),
		T(test_only_ready_devices_are_stored),
		T(test_missing_file_loads_nothing),
		T(test_load_raises_seqs_and_never_lowers),
		T(test_load_into_the_same_table_is_idempotent),
		T(test_damaged_file_is_ebadmsg),
		T(test_truncated_file_is_ebadmsg),
		T(test_more_devices_than_slots_is_enospc),
		T(test_checkpoint_past_the_log_end_is_estale),
		T(test_second_store_replaces_the_first),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
