/* retire — retention on disk: what flusherd's housekeeping thread does
 * with [wal] retain_bytes / retain_ms (the decision is flusherd/retain.h).
 *
 * A pass lists the segments (file size; the newest record's server time,
 * from the MARK that ends a finished segment), reads each holder's
 * committed LSN, asks retain_floor() which segments may go and retires
 * them, oldest first.  It is flusherd's own policy code, not a library:
 * it logs what it does, once per event.
 *
 * The holders are the sink instances named in [sinkd] sinks, each holding
 * at the LSN in <data dir>/sinks/<name>.offset (common/offset.h), whether
 * sinkd runs, failed or never started it: a missing file holds at LSN 0,
 * and so does a damaged one (warned once).  An offset file of a name no
 * longer in [sinkd] sinks holds nothing (said once).  An instance with
 * lag_policy = skip (common/sinkcfg.h) more than lag_cap_bytes behind holds
 * nothing either (said once per episode); before a segment it had not
 * delivered goes, its records of the instance's topics from the
 * instance's offset on are counted into <name>.skipped, so that sinkd can
 * say exactly what it skips.
 *
 * A segment may be mapped by a reader (sinkd's, a backfill's) that holds a
 * shared flock on it (sinkd/reader.h).  Only a segment whose exclusive
 * flock the pass gets is recycled (its bytes are rewritten later); one in
 * use is unlinked, and its reader keeps reading the old file whole.  Held
 * while the skip counts are made, the lock also means no instance is
 * reading inside that segment, so its offset there cannot move meanwhile.
 *
 * Durability before any segment goes: the checkpoint LSN handed in must be
 * one written and synced to data/meta (the caller's last checkpoint); the
 * offset files read are whole (sinkd syncs each before renaming it into
 * place) and the pass fsyncs sinks/ so their renames are on disk too.
 * Each segment is then unlinked and wal/ fsynced before the next, so a
 * crash leaves the log contiguous.
 *
 * A retired segment is recycled rather than unlinked while the pool of
 * them has room (wal_recycle): a later rotation takes it, and flusherd
 * does not write a segment of zeros for it.
 */
#ifndef MI_RETIRE_H
#define MI_RETIRE_H
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/settings.h"
#include "common/sinkcfg.h"
#include "flusherd/retain.h"
#include "flusherd/wal.h"

struct retire_name {
	char name[64];
	unsigned warned;        /* RETIRE_W_* already logged for it */
	struct sinkcfg cfg;     /* holders: topics, lag cap and policy */
	int passing;            /* lag_policy = skip, over its cap: retention passes it */
};

struct retire_age {
	uint64_t first_lsn;
	uint64_t newest_ns;
};

struct retirer {
	const struct settings *s;
	uint64_t *ctr;                  /* flusherd's counters */
	char wal_dir[512], sinks_dir[512];
	struct retire_name *holders;    /* [sinkd] sinks */
	size_t nholders;
	struct retire_name *gone;       /* offset files not in the config, said once */
	size_t ngone;
	struct retire_age *ages;        /* newest-record times of finished segments */
	size_t nages;
	enum retain_stop held;          /* the last pass's reason when a holder kept the log over its limit */
	size_t held_by;
};

/* Reads the holders from s ([sinkd] sinks) and their [sink.NAME] lag
 * keys from cfg (NULL: every holder holds, every topic).  0, -ENOMEM, or
 * -EINVAL with err naming the key. */
int retire_init(struct retirer *rt, const struct settings *s, cfg_t *cfg, uint64_t *ctr, char err[CFG_ERR_LEN]);
void retire_free(struct retirer *rt);
/* Whether a limit is set at all (else a pass does nothing). */
int retire_enabled(const struct settings *s);
/* One pass.  ckpt_lsn: the durable checkpoint; end_lsn: the durable end
 * of the log; sp: the spare being made, given up when a retired segment
 * can be recycled instead (wal_recycle).  Returns the segments retired,
 * or -errno (logged). */
int retire_run(struct retirer *rt, uint64_t ckpt_lsn, uint64_t end_lsn, struct wal_spare *sp);
#endif
