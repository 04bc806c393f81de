/* retain — the retention floor: which WAL segments may go.
 *
 * A pure function of what flusherd knows (the segments, the holders'
 * committed LSNs, the checkpoint, the limits), so it is tested apart from
 * the file system; flusherd/retire.h reads those inputs and acts on the
 * answer.  Segments go oldest first, and only a prefix of them (the log
 * stays contiguous).  Segment i may go when all of these hold:
 *
 *   - it is not the last one: the active segment is never retired;
 *   - every holder that holds has committed past its end (segs[i+1].first_lsn):
 *     a sink resumes from its committed LSN, so what lies below it was
 *     delivered and is never read again;
 *   - the checkpoint is past its end: recovery scans from ckpt_lsn, and the
 *     device checkpoint written with it covers every record below it (a
 *     fresh shm region takes device seqs from there, not from the log);
 *   - it exceeds a limit: the log's bytes (every segment file, this one and
 *     the active one included, and ready_bytes) are above retain_bytes, or its newest record
 *     is older than retain_ms by server time.  0 means no such limit; with
 *     both 0 nothing goes.
 *
 * The caller must hand in a checkpoint LSN that is durable (meta written
 * and synced) and holder LSNs that are durable (offset files synced):
 * retiring a segment is forever, so nothing that could still point into it
 * after a crash may be newer than what was on disk.
 *
 * Holders carry their instance's lag policy ([sink.NAME] lag_cap_bytes,
 * lag_policy, common/sinkcfg.h): a LAG_SKIP holder more than lag_cap_bytes
 * behind the end of the log stops holding (it will find its next record
 * retired, and counts and says what it skipped); a LAG_HOLD one holds
 * however far behind it is.
 *
 * The limit on bytes counts the files ready to become segments too (the
 * recycled pool and the spare, ready_bytes): retain_bytes bounds what the
 * log takes of the disk, not only its segments.
 */
#ifndef MI_RETAIN_H
#define MI_RETAIN_H
#include <stddef.h>
#include <stdint.h>

#include "common/sinkcfg.h"

struct retain_holder {
	const char *name;
	uint64_t lsn;           /* committed: every record below it is delivered */
	uint64_t lag_cap_bytes; /* LAG_SKIP: how far behind it may fall; 0 = no cap */
	enum lag_policy policy;
};

struct retain_seg {
	uint64_t first_lsn;
	uint64_t bytes;         /* the file's size on disk */
	uint64_t newest_ns;     /* server time of its newest record (CLOCK_REALTIME); 0 = unknown */
};

struct retain_in {
	const struct retain_seg *segs;  /* oldest first, contiguous; the last is the active one */
	size_t nseg;
	const struct retain_holder *holders;
	size_t nholders;
	uint64_t end_lsn;               /* the durable end of the log */
	uint64_t ckpt_lsn;              /* durable checkpoint (data/meta) */
	uint64_t now_ns;                /* CLOCK_REALTIME */
	uint64_t ready_bytes;           /* files ready to be segments (pool, spare): counted with the log */
	uint64_t retain_bytes;          /* 0 = no size limit */
	uint64_t retain_ms;             /* 0 = no age limit */
};

/* Why the floor is where it is: what keeps segs[n] (when n < nseg). */
enum retain_stop {
	RETAIN_STOP_ACTIVE,     /* segs[n] is the active segment */
	RETAIN_STOP_LIMITS,     /* segs[n] exceeds no limit */
	RETAIN_STOP_HOLDER,     /* holders[holder] has not committed past it */
	RETAIN_STOP_CKPT,       /* the checkpoint is not past it */
	RETAIN_STOP_MAX
};

struct retain_plan {
	size_t n;               /* segs[0..n) may go */
	uint64_t bytes;         /* the sum of their bytes */
	uint64_t floor_lsn;     /* the log starts here once they are gone (segs[n].first_lsn) */
	enum retain_stop stop;
	size_t holder;          /* RETAIN_STOP_HOLDER: the first holder not past it */
};

/* Whether h holds the log (a LAG_SKIP holder past its cap does not). */
int retain_holds(const struct retain_holder *h, uint64_t end_lsn);
/* Computes the plan for in (nseg may be 0: nothing goes). */
void retain_floor(const struct retain_in *in, struct retain_plan *ret);
const char *retain_stop_name(enum retain_stop s);
#endif
