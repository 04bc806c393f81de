/* runner — one sink instance's delivery loop: batching, retry with
 * backoff, commit and redelivery, lag accounting.
 *
 * It reads the log through its own reader from `cursor` up to the durable
 * LSN flusherd publishes, hands the records of the instance's topics to the
 * sink in batches, and commits (the sink's commit, then the offset file)
 * every commit_ms.  A batch is delivered as soon as it holds batch_records
 * records or batch_bytes payload bytes, or batch_ms after its first record
 * became durable, whichever comes first; a lagging instance therefore
 * delivers full batches back to back.  A failed delivery or commit sends
 * the cursor back to the committed LSN, and the same records are delivered
 * again after a backoff (retry_min_ms doubling up to retry_max_ms, with
 * jitter); the offset file only ever names what the sink committed.
 */
#ifndef MI_RUNNER_H
#define MI_RUNNER_H
#include <stdint.h>

#include "common/sinkcfg.h"
#include "shm/shm.h"
#include "sinkd/sink.h"

struct runner_params {
	uint32_t batch_records;
	uint64_t batch_bytes;
	uint64_t batch_ms;
	uint64_t commit_ms;
	uint32_t retry_min_ms, retry_max_ms;
};

struct runner {
	/* set by the caller */
	const char *name;                 /* instance name: offset file, messages */
	const struct sink_desc *d;
	void *state;                      /* the sink's, from init() */
	struct runner_params p;
	const uint8_t *topics;            /* common/sinkcfg.h topics_has(); NULL: every topic */
	struct shm_ctl *ctl;              /* durable_lsn and its futex */
	struct shm_sink *pub;             /* where the instance's figures go */
	uint64_t *ctr;                    /* sinkd's stage counters, or NULL */
	const char *wal_dir;
	const char *offset_dir;           /* <data dir>/sinks */
	uint64_t segment_bytes;
	const volatile int *stop;
	uint64_t start_lsn;               /* the committed offset it resumes from */
	uint64_t end_lsn;                 /* 0: follow the log; else stop there (backfill) */
	int no_offsets;                   /* backfill: never write the offset file */
	int fresh;                        /* no offset file yet: a new instance */
	enum lag_policy policy;           /* [sink.NAME] lag_policy, lag_cap_bytes */
	uint64_t lag_cap_bytes;
	/* filled in */
	uint64_t cursor, committed;       /* delivered up to; the sink durable up to */
	uint64_t rewound_to;              /* where the last retry began */
	uint64_t stored;                  /* the LSN in the offset file ... */
	void *stored_blob;                /* ... and its blob */
	size_t stored_blob_len;
	uint64_t delivered_records, delivered_bytes;
};

/* Runs until *stop, a fatal delivery or end_lsn.  Returns 0, or -EIO when
 * the sink said FATAL (the message is logged and published), or (backfill)
 * -ENOENT when retention retired a part of the range before it was read.
 *
 * Its next record retired (the log starts past the cursor): a new instance
 * (fresh) starts at the oldest record held, as Kafka's earliest; any other
 * skips to it, counts what it skips (skipped_records from the ledger
 * flusherd wrote before it retired them, common/offset.h; skipped_bytes in
 * log bytes) and says so: with lag_policy = skip once per episode, which
 * lasts until it is back within lag_cap_bytes (state skipping meanwhile);
 * with hold, where it should never happen, as an error each time. */
int runner_run(struct runner *r);
#endif
