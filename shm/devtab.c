#include "shm/devtab.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "shm/atomic.h"

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Waits out a slot another process is filling.  A claimer that died mid-claim
 * would leave it CLAIMING forever: after a bounded wait the slot is marked
 * DEAD, so only the first probe to meet it waits, and it counts as a
 * different device's (a claimer that was only slow still stores READY). */
static uint32_t settled(struct shm_dev *d)
{
	uint32_t st = shm_load_acquire(&d->state);
	for (int i = 0; st == DEV_CLAIMING && i < 100000; i++) {
		sched_yield();
		st = shm_load_acquire(&d->state);
	}
	if (st == DEV_CLAIMING && !shm_cas(&d->state, &st, DEV_DEAD))
		return st;   /* it settled after all */
	return st == DEV_CLAIMING ? DEV_DEAD : st;
}

static int same(const struct shm_dev *d, const uint8_t *id, uint8_t len)
{
	return d->id_len == len && !memcmp(d->id, id, len);
}

int devtab_lookup(struct shm_ctl *ctl, const uint8_t *id, uint8_t len)
{
	uint32_t mask = ctl->ndevices - 1;
	uint32_t i = (uint32_t)fnv1a(id, len) & mask;
	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		struct shm_dev *d = shm_dev(ctl, i);
		uint32_t st = settled(d);
		if (st == DEV_EMPTY)
			return -ENOENT;
		if (st == DEV_READY && same(d, id, len))
			return (int)i;
	}
	return -ENOENT;
}

int devtab_insert(struct shm_ctl *ctl, const uint8_t *id, uint8_t len)
{
	if (len == 0 || len > MI_DEVID_MAX)
		return -EINVAL;
	uint32_t mask = ctl->ndevices - 1;
	uint32_t i = (uint32_t)fnv1a(id, len) & mask;
	/* every slot may be used: lookups stop after ndevices probes */
	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		struct shm_dev *d = shm_dev(ctl, i);
		uint32_t st = settled(d);
		if (st == DEV_EMPTY) {
			uint32_t exp = DEV_EMPTY;
			if (shm_cas(&d->state, &exp, DEV_CLAIMING)) {
				d->id_len = len;
				memcpy(d->id, id, len);
				shm_store_relaxed(&d->last_accepted, 0);
				shm_store_relaxed(&d->last_durable, 0);
				shm_store_release(&d->state, DEV_READY);
				return (int)i;
			}
			st = settled(d);
		}
		if (st == DEV_READY && same(d, id, len))
			return (int)i;
	}
	return -ENOSPC;
}

uint32_t devtab_count(struct shm_ctl *ctl)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < ctl->ndevices; i++)
		n += shm_load_acquire(&shm_dev(ctl, i)->state) == DEV_READY;
	return n;
}
