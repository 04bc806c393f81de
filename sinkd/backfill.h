/* backfill — one configured sink instance over a range of the log, once:
 * `sinkd --backfill NAME` (recovery and batch jobs; the original design's
 * queue worker).
 *
 * The range is half-open, [from, to), by LSN or by server time (the first
 * record at or after each time).  It ends at the durable end of the log:
 * the one the running pipeline publishes, else the last checkpoint in
 * data/meta (a clean stop checkpoints the whole log).  The instance runs
 * from no blob with SINK_ENV_BACKFILL, and neither its offset file nor its
 * shared-memory figures are touched, so the live instance carries on.
 */
#ifndef MI_BACKFILL_H
#define MI_BACKFILL_H
#include <stdint.h>

#include "common/settings.h"
#include "sinkd/instance.h"

struct backfill_args {
	uint64_t from_lsn, to_lsn;      /* to_lsn 0: the durable end */
	uint64_t since_ns, until_ns;    /* used when by_since / by_until */
	int by_since, by_until;
	int progress;                   /* a progress line on stderr */
	const volatile int *stop;
};

/* Runs it and prints the summary on stdout.  Returns the exit status: 0,
 * 1 (the sink failed) or 2 (a bad range, err says why). */
int backfill_run(const struct settings *s, struct sink_inst *in, const struct backfill_args *a,
		 char err[CFG_ERR_LEN]);
#endif
