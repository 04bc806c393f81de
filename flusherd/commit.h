/* commit — group commit: drain the rings into the WAL, sync, publish.
 *
 * One pass of commit_step() gathers every record the rings hold (up to the
 * byte bound and the room left in the segment) into at most two iovec spans
 * per ring, appends them and a MARK with one pwritev, and advances the
 * rings' tails.  commit_sync() fdatasyncs everything appended since the last
 * sync (one fdatasync covers every record that arrived meanwhile), then
 * publishes: ring `released`, each device's last_durable, the durable LSN,
 * and one futex signal that wakes acks, ring space and sinkd together.
 */
#ifndef MI_COMMIT_H
#define MI_COMMIT_H
#include <stdint.h>

#include "flusherd/wal.h"
#include "shm/ring.h"
#include "shm/shm.h"

struct dev_update {
	uint32_t slot;
	uint64_t seq;
};

struct committer {
	struct shm_ctl *ctl;
	struct wal *wal;
	struct ring_cons cons[SHM_MAX_RINGS];   /* pos = written to the WAL */
	uint64_t released[SHM_MAX_RINGS];       /* = durable */
	uint64_t commit_bytes;
	uint64_t commit_ns;
	uint32_t max_rec;                       /* largest record a ring may hold */
	uint64_t unsynced_since;                /* monotonic ns of the first unsynced append */
	/* seqs of unsynced records, applied to the device table after the sync */
	uint64_t *pend;                         /* per slot, 0 = none */
	uint32_t *touched;
	uint32_t ntouched;
	uint64_t *ctr;
	const char *fail_op;                    /* what the last failure was doing (wal.fail_path: on what) */
	_Alignas(8) uint8_t mark[REC_HDR_LEN + REC_MARK_PLEN(SHM_MAX_RINGS)];
};

int commit_init(struct committer *c, struct shm_ctl *ctl, struct wal *w, const uint64_t *pos,
		uint64_t commit_bytes, uint64_t commit_us, uint32_t max_rec);
void commit_free(struct committer *c);
/* Gathers and appends.  Returns bytes appended (0: rings empty), or -errno
 * from the WAL (nothing was consumed; the caller stalls and retries), or
 * -EBADMSG for an impossible ring record. */
int64_t commit_step(struct committer *c);
/* Whether an unsynced append has waited long enough or is large enough. */
int commit_due(const struct committer *c, uint64_t now_ns);
/* Syncs and publishes.  On failure the unsynced records are rewound into
 * the rings (written again by the next step).  Returns 0 or -errno. */
int commit_sync(struct committer *c);
/* Whether any ring holds records not yet written. */
int commit_pending(const struct committer *c);
#endif
