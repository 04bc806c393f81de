/* ckpt — flusherd's checkpoints: data/meta and data/devices.
 *
 * data/meta is a slotfile (common/slotfile.h, magic "MIMT") whose payload is:
 *   off size field
 *   0   4    version   1
 *   4   4    nrings
 *   8   8    log_id    random per data directory; every segment carries it
 *   16  8    ckpt_lsn  the log is durable and checkpointed up to here
 *   24  8    shm_id    ring epoch the positions belong to
 *   32  8*n  pos[n]    ring positions the WAL holds at ckpt_lsn
 *
 * data/devices holds every device's last durable seq at some LSN >= the
 * meta's ckpt_lsn.  Written as devices.tmp, fsync, rename, fsync(dir), so it
 * is always whole.  Layout:
 *   0   8    magic     "MIDEVCK1"
 *   8   8    lsn
 *   16  4    count
 *   20  4    crc       CRC-32 of the entries
 *   24  ..   entries   u8 id_len, id bytes, u64 last_durable
 * Recovery starts scanning the WAL at ckpt_lsn: replaying records already
 * counted in the devices file only raises seqs to the same maximum.
 */
#ifndef MI_CKPT_H
#define MI_CKPT_H
#include <stdint.h>

#include "shm/shm.h"

struct meta {
	uint32_t nrings;
	uint64_t log_id;
	uint64_t ckpt_lsn;
	uint64_t shm_id;
	uint64_t pos[SHM_MAX_RINGS];
};

/* Returns 0, -ENOENT when there is no meta yet, or -errno. */
int meta_load(const char *data_dir, struct meta *ret);
int meta_store(const char *data_dir, const struct meta *m);

/* Writes every READY device of the table with its last_durable. */
int devices_store(const char *data_dir, struct shm_ctl *ctl, uint64_t lsn);
/* Inserts every device of the file into the table, raising last_durable
 * (and last_accepted) to the stored seq.  A file written at an LSN past
 * max_lsn (the log was cut by --repair since) is not loaded: -ESTALE.
 * Returns the count, 0 when the file does not exist, or -errno / -EBADMSG. */
int devices_load(const char *data_dir, struct shm_ctl *ctl, uint64_t max_lsn, uint64_t *ret_lsn);
#endif
