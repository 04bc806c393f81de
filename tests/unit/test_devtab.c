/* test_devtab — the shared device table (shm/devtab.h), on real shm regions. */
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/shm.h"

struct fix {
	char inst[64];
	shm_region_t reg;
	struct shm_ctl *ctl;
};

static int instance_counter;

static int open_fix(struct fix *f, uint32_t ndevices)
{
	char err[SHM_ERR_LEN];
	struct shm_geom g = { .nrings = 1, .ndevices = ndevices, .ring_bytes = 4096 };
	snprintf(f->inst, sizeof(f->inst), "test-devtab-%d-%d", (int)getpid(), instance_counter++);
	shm_unlink_instance(f->inst);
	int r = shm_open_region(f->inst, &g, 1, &f->reg, err);
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		return r;
	}
	f->ctl = f->reg.ctl;
	return 0;
}

static void close_fix(struct fix *f)
{
	shm_close_region(&f->reg);
	shm_unlink_instance(f->inst);
}

static int setup16(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f || open_fix(f, 16) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	close_fix(f);
	free(f);
	return 0;
}

/* The table's documented hash (FNV-1a 64), to build colliding ids. */
static uint32_t home(const char *id, uint32_t ndevices)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = id; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 0x100000001b3ull;
	}
	return (uint32_t)h & (ndevices - 1);
}

static int ins(struct shm_ctl *ctl, const char *id)
{
	return devtab_insert(ctl, (const uint8_t *)id, (uint8_t)strlen(id));
}

static int look(struct shm_ctl *ctl, const char *id)
{
	return devtab_lookup(ctl, (const uint8_t *)id, (uint8_t)strlen(id));
}

/* Finds the first id "<prefix><n>" with the given home slot. */
static void id_with_home(char *buf, size_t len, const char *prefix, uint32_t want, uint32_t ndevices,
			 int *n)
{
	for (;; (*n)++) {
		snprintf(buf, len, "%s%d", prefix, *n);
		if (home(buf, ndevices) == want) {
			(*n)++;
			return;
		}
	}
}

static void test_insert_then_lookup(void **state)
{
	struct fix *f = *state;
	assert_int_equal(devtab_count(f->ctl), 0);
	assert_int_equal(look(f->ctl, "sensor-1"), -ENOENT);
	int s = ins(f->ctl, "sensor-1");
	assert_true(s >= 0 && s < 16);
	assert_int_equal(look(f->ctl, "sensor-1"), s);
	assert_int_equal(devtab_count(f->ctl), 1);
	struct shm_dev *d = shm_dev(f->ctl, (uint32_t)s);
	assert_int_equal(d->state, DEV_READY);
	assert_int_equal(d->id_len, 8);
	assert_memory_equal(d->id, "sensor-1", 8);
	assert_int_equal(d->last_accepted, 0);
	assert_int_equal(d->last_durable, 0);
	/* a prefix or an extension of the id is another device */
	assert_int_equal(look(f->ctl, "sensor-"), -ENOENT);
	assert_int_equal(look(f->ctl, "sensor-10"), -ENOENT);
}

static void test_same_id_returns_same_slot(void **state)
{
	struct fix *f = *state;
	int a = ins(f->ctl, "gw:7");
	shm_dev(f->ctl, (uint32_t)a)->last_accepted = 99;
	for (int i = 0; i < 5; i++)
		assert_int_equal(ins(f->ctl, "gw:7"), a);
	/* inserting again does not reset the device's state */
	assert_int_equal(shm_dev(f->ctl, (uint32_t)a)->last_accepted, 99);
	assert_int_equal(devtab_count(f->ctl), 1);
}

static void test_insert_rejects_bad_length(void **state)
{
	struct fix *f = *state;
	uint8_t id[MI_DEVID_MAX + 1];
	memset(id, 'a', sizeof(id));
	assert_int_equal(devtab_insert(f->ctl, id, 0), -EINVAL);
	assert_int_equal(devtab_insert(f->ctl, id, MI_DEVID_MAX + 1), -EINVAL);
	int s = devtab_insert(f->ctl, id, MI_DEVID_MAX);
	assert_true(s >= 0);
	assert_int_equal(devtab_lookup(f->ctl, id, MI_DEVID_MAX), s);
	assert_int_equal(devtab_count(f->ctl), 1);
}

/* Ids with one home slot take the following slots in turn (linear probing). */
static void test_collisions_probe_linearly(void **state)
{
	struct fix *f = *state;
	const uint32_t b = 14;                 /* probing wraps past the end */
	char id[4][32];
	int n = 0;
	for (int i = 0; i < 3; i++)
		id_with_home(id[i], sizeof(id[i]), "c", b, 16, &n);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ins(f->ctl, id[i]), (int)((b + (uint32_t)i) & 15));
	/* an id at home 15 finds it taken and goes on past 0 */
	id_with_home(id[3], sizeof(id[3]), "d", 15, 16, &n);
	assert_int_equal(ins(f->ctl, id[3]), 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(look(f->ctl, id[i]), (int)((b + (uint32_t)i) & 15));
	assert_int_equal(look(f->ctl, id[3]), 1);
	/* an absent id at the same home walks the run and stops at a hole */
	char absent[32];
	id_with_home(absent, sizeof(absent), "e", b, 16, &n);
	assert_int_equal(look(f->ctl, absent), -ENOENT);
	assert_int_equal(devtab_count(f->ctl), 4);
}

/* A claim its claimer never finished (killed between its CAS and READY)
 * is waited out once and marked DEAD: ids probing past it are found and
 * inserted, and later probes do not wait again. */
static void test_abandoned_claim_is_marked_dead_and_passed(void **state)
{
	struct fix *f = *state;
	const uint32_t b = 5;
	char id[3][32];
	int n = 0;
	for (int i = 0; i < 3; i++)
		id_with_home(id[i], sizeof(id[i]), "z", b, 16, &n);
	assert_int_equal(ins(f->ctl, id[0]), (int)b);
	assert_int_equal(ins(f->ctl, id[1]), (int)b + 1);
	shm_store_release(&shm_dev(f->ctl, b)->state, DEV_CLAIMING);   /* the claimer died */
	assert_int_equal(look(f->ctl, id[1]), (int)b + 1);
	assert_int_equal(shm_load_acquire(&shm_dev(f->ctl, b)->state), DEV_DEAD);
	assert_int_equal(look(f->ctl, id[0]), -ENOENT);                /* it never became a device */
	assert_int_equal(ins(f->ctl, id[2]), (int)b + 2);
	assert_int_equal(look(f->ctl, id[2]), (int)b + 2);
}

/* A full table: new ids get -ENOSPC, known ids are still found and
 * re-inserted, absent ids are not found (and the lookup ends). */
static void test_full_table_returns_enospc(void **state)
{
	struct fix *f = *state;
	char id[64][16];
	int ok = 0, r = 0, i;
	for (i = 0; i < 64; i++) {
		snprintf(id[i], sizeof(id[i]), "full-%d", i);
		r = ins(f->ctl, id[i]);
		if (r == -ENOSPC)
			break;
		assert_true(r >= 0 && r < 16);
		ok++;
	}
	assert_int_equal(r, -ENOSPC);
	assert_true(ok >= 15 && ok <= 16);
	assert_int_equal(devtab_count(f->ctl), (uint32_t)ok);
	for (int k = 0; k < ok; k++) {
		int s = look(f->ctl, id[k]);
		assert_true(s >= 0);
		assert_int_equal(ins(f->ctl, id[k]), s);
		assert_memory_equal(shm_dev(f->ctl, (uint32_t)s)->id, id[k], strlen(id[k]));
	}
	for (int k = ok; k < 64; k++) {
		snprintf(id[k], sizeof(id[k]), "full-%d", k);
		assert_int_equal(look(f->ctl, id[k]), -ENOENT);
	}
	assert_int_equal(devtab_count(f->ctl), (uint32_t)ok);
}

/* -ENOSPC must mean the table is full.  The insert probes only ndevices-1
 * slots ("keep one slot free"), so with 15 devices in, an id whose home is
 * just past the one free slot never reaches it and gets -ENOSPC, while any
 * other new id takes that slot and fills the table completely: capacity
 * depends on which id comes 16th, and the free slot is not kept either. */
static void test_enospc_only_when_every_slot_is_taken(void **state)
{
	struct fix *f = *state;
	char id[32];
	int n = 0;
	/* fill every slot but 5: one id per home, 15 homes */
	for (uint32_t s = 0; s < 16; s++) {
		if (s == 5)
			continue;
		id_with_home(id, sizeof(id), "h", s, 16, &n);
		assert_int_equal(ins(f->ctl, id), (int)s);
	}
	assert_int_equal(devtab_count(f->ctl), 15);
	/* a new id whose probe starts at 6 must still find slot 5 */
	id_with_home(id, sizeof(id), "late", 6, 16, &n);
	int r = ins(f->ctl, id);
	assert_int_equal(r, 5);                /* fails today: -ENOSPC with slot 5 free */
}

static int setup_big(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f || open_fix(f, 4096) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* Two processes insert overlapping id sets at the same moment, both in the
 * same order (so they race on each shared id) or in opposite orders; every
 * id must end up in one slot that both saw. */
enum { NIDS = 2000, A_END = 1500, B_BEGIN = 500, ROUNDS = 40 };

struct race {
	uint32_t go;
	uint32_t ready;
	int32_t slot_b[NIDS];
};

static void race_id(char *buf, size_t len, int i, int round)
{
	snprintf(buf, len, "dev-%d-%d", round, i);
}

static int race_insert(struct shm_ctl *ctl, struct race *rc, int round, int lo, int hi, int reverse,
		       int32_t *out)
{
	__atomic_fetch_add(&rc->ready, 1, __ATOMIC_SEQ_CST);
	while (!shm_load_acquire(&rc->go))
		;
	for (int k = lo; k < hi; k++) {
		int i = reverse ? hi - 1 - (k - lo) : k;
		char id[32];
		race_id(id, sizeof(id), i, round);
		int s = ins(ctl, id);
		if (s < 0)
			return -1;
		out[i] = s;
	}
	return 0;
}

static void test_concurrent_inserts_give_consistent_slots(void **state)
{
	struct fix *f = *state;
	static const struct shm_geom g = { .nrings = 1, .ndevices = 4096, .ring_bytes = 4096 };
	struct race *rc = mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(rc != MAP_FAILED);
	static int32_t slot_a[NIDS];
	for (int round = 0; round < ROUNDS; round++) {
		if (round) {                   /* a fresh table each round */
			close_fix(f);
			assert_int_equal(open_fix(f, 4096), 0);
		}
		memset(rc, 0, sizeof(*rc));
		memset(slot_a, 0xff, sizeof(slot_a));
		memset(rc->slot_b, 0xff, sizeof(rc->slot_b));
		int reverse = round % 3 == 2;
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* the child attaches on its own, as another stage would */
			shm_region_t r;
			char err[SHM_ERR_LEN];
			if (shm_open_region(f->inst, &g, 1, &r, err) < 0 || r.created)
				_exit(3);
			int rr = race_insert(r.ctl, rc, round, B_BEGIN, NIDS, reverse, rc->slot_b);
			shm_close_region(&r);
			_exit(rr < 0 ? 1 : 0);
		}
		while (shm_load_acquire(&rc->ready) < 1)
			;
		shm_store_release(&rc->go, 1);
		int ra = race_insert(f->ctl, rc, round, 0, A_END, 0, slot_a);
		int st = 0;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
		assert_int_equal(ra, 0);

		static uint8_t used[4096];
		memset(used, 0, sizeof(used));
		for (int i = 0; i < NIDS; i++) {
			char id[32];
			race_id(id, sizeof(id), i, round);
			int want = i < A_END ? slot_a[i] : rc->slot_b[i];
			if (i >= B_BEGIN && i < A_END)
				assert_int_equal(rc->slot_b[i], slot_a[i]);
			assert_true(want >= 0 && want < 4096);
			assert_int_equal(look(f->ctl, id), want);
			assert_int_equal(used[want], 0);
			used[want] = 1;
		}
		assert_int_equal(devtab_count(f->ctl), NIDS);
	}
	munmap(rc, sizeof(*rc));
}

/* shm.c: an attacher with another geometry is refused, by name. */
static void test_attach_with_other_geometry_is_refused(void **state)
{
	struct fix *f = *state;
	shm_region_t r;
	char err[SHM_ERR_LEN] = "";
	struct shm_geom g = { .nrings = 1, .ndevices = 32, .ring_bytes = 4096 };
	assert_int_equal(shm_open_region(f->inst, &g, 0, &r, err), -ESTALE);
	assert_non_null(strstr(err, f->inst));
	g.ndevices = 16;
	assert_int_equal(shm_open_region(f->inst, &g, 0, &r, err), 0);
	assert_false(r.created);
	/* the same memory: a device inserted through one mapping is seen by the other */
	int s = ins(f->ctl, "seen-by-both");
	assert_int_equal(look(r.ctl, "seen-by-both"), s);
	assert_int_equal(r.ctl->shm_id, f->ctl->shm_id);
	shm_close_region(&r);
}

/* shm.c: a region others may read or write is refused, naming its mode. */
static void test_attach_to_a_region_open_to_others_is_refused(void **state)
{
	struct fix *f = *state;
	shm_region_t r;
	char err[SHM_ERR_LEN] = "", path[128];
	struct shm_geom g = { .nrings = 1, .ndevices = 16, .ring_bytes = 4096 };
	snprintf(path, sizeof(path), "/dev/shm/module-ingest.%s", f->inst);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(shm_open_region(f->inst, &g, 0, &r, err), -EPERM);
	assert_non_null(strstr(err, "mode 0644"));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(shm_open_region(f->inst, &g, 0, &r, err), 0);
	shm_close_region(&r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup16, teardown)
	const struct CMUnitTest tests[] = {
		T(test_insert_then_lookup),
		T(test_same_id_returns_same_slot),
		T(test_insert_rejects_bad_length),
		T(test_collisions_probe_linearly),
		T(test_abandoned_claim_is_marked_dead_and_passed),
		T(test_full_table_returns_enospc),
		T(test_enospc_only_when_every_slot_is_taken),
		cmocka_unit_test_setup_teardown(test_concurrent_inserts_give_consistent_slots, setup_big, teardown),
		T(test_attach_with_other_geometry_is_refused),
		T(test_attach_to_a_region_open_to_others_is_refused),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
