/* devtab — the per-device table in shared memory.
 *
 * Open addressing (FNV-1a, linear probing) over a power-of-two array of
 * 128-byte slots.  Slots are claimed with a CAS on `state` and never freed,
 * so a slot index stays valid for the life of the region and can travel in
 * ring records.  Writers per field:
 *
 *   last_accepted  ingestd: highest seq it put in a ring (or found durable)
 *   last_durable   flusherd: highest seq fdatasync'd to the WAL
 *   udp_window     ingestd: which of the 64 seqs below last_accepted UDP took
 *
 * A restarted flusherd rebuilds last_durable from the WAL; a fresh region
 * is rebuilt from the device checkpoint plus the WAL after it.
 */
#ifndef MI_DEVTAB_H
#define MI_DEVTAB_H
#include <stdint.h>

#include "common/frame.h"
#include "shm/shm.h"

/* DEV_DEAD: a claim whose claimer died mid-way (see devtab.c); probes
 * pass it like another device's slot. */
enum dev_state { DEV_EMPTY = 0, DEV_CLAIMING = 1, DEV_READY = 2, DEV_DEAD = 3 };

struct shm_dev {
	uint32_t state;
	uint8_t id_len;
	uint8_t pad0_[3];
	uint64_t last_accepted;
	uint64_t last_durable;
	uint32_t flags;
	uint32_t pad1_;
	uint8_t id[MI_DEVID_MAX];
	/* UDP replay window (ingestd): bit i set = seq udp_base - 1 - i is
	 * taken; 64 wide: seqs 64 or more below the base are refused.  udp_base is
	 * the last_accepted the window was last aligned to (TCP moves
	 * last_accepted without touching the window). */
	uint64_t udp_window;
	uint64_t udp_base;
	uint8_t pad2_[128 - 48 - MI_DEVID_MAX];
};
_Static_assert(sizeof(struct shm_dev) == 128, "device slot is 128 bytes");

static inline struct shm_dev *shm_dev(struct shm_ctl *ctl, uint32_t slot)
{
	return (struct shm_dev *)(void *)((uint8_t *)ctl + ctl->dev_off) + slot;
}

/* Slot of the device, or -ENOENT. */
int devtab_lookup(struct shm_ctl *ctl, const uint8_t *id, uint8_t len);
/* Slot of the device, claimed if new; -ENOSPC when the table is full. */
int devtab_insert(struct shm_ctl *ctl, const uint8_t *id, uint8_t len);
/* Number of slots in use (a scan; for stats and checkpoints). */
uint32_t devtab_count(struct shm_ctl *ctl);
#endif
