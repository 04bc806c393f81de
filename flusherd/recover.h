/* recover — flusherd start-up: make the log whole, then the shm agree with it.
 *
 * 1. Read data/meta (log id, checkpoint LSN, ring positions).
 * 2. Scan every record from the checkpoint to the end, checking CRCs.  The
 *    log is trusted up to the end of its last MARK: anything after it was
 *    never acknowledged (acks follow the sync, which follows the MARK) and is
 *    either torn or still in a ring, so it is cut.  Damage before the last
 *    segment is not a torn tail but lost durable data: recovery refuses and
 *    names the file and offset (flusherd --replay / --repair).
 * 3. fdatasync the tail (the last flusherd may have died before its sync).
 * 4. Raise each device's last_durable to what the log holds; on a fresh shm
 *    region load data/devices first.
 * 5. Set each ring's tail and released to the positions the log holds, so no
 *    record is written twice and none still in a ring is lost.
 */
#ifndef MI_RECOVER_H
#define MI_RECOVER_H
#include <stdint.h>

#include "shm/shm.h"

struct recover_result {
	uint64_t log_id;
	uint64_t seg_first;     /* first LSN of the last segment */
	uint64_t end_lsn;       /* the log ends here after the cut */
	uint64_t pos[SHM_MAX_RINGS];
	uint64_t records;       /* records scanned after the checkpoint */
	uint64_t cut_bytes;     /* bytes cut from the tail */
	int new_log;            /* no segment existed: the caller creates one */
	int devices_loaded;     /* devices read from data/devices */
	/* a damaged record met while rebuilding device seqs from segments
	 * before the checkpoint (skipped with the rest of its segment) */
	char damaged_seg[32];
	uint64_t damaged_off;
};

#define RECOVER_ERR_LEN 512

/* Returns 0, -EXDEV when ctl holds another log's state (err says which:
 * nothing was changed that a fresh region's recovery would not change), or
 * another -errno with err. */
int recover_run(const char *data_dir, struct shm_ctl *ctl, struct recover_result *ret,
		char err[RECOVER_ERR_LEN]);
#endif
