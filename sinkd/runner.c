#include "sinkd/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/offset.h"
#include "common/seg.h"
#include "common/sinkcfg.h"
#include "shm/atomic.h"
#include "shm/futex.h"
#include "sinkd/reader.h"

#define MS 1000000ull

static void set_state(struct runner *r, enum shm_sink_state st)
{
	shm_store_release(&r->pub->state, (uint32_t)st);
}

/* The message goes to the log and, for ingest-stats, into the slot (a
 * reader may see it half written: a stats line, never a decision). */
static void note_error(struct runner *r, const char *msg)
{
	snprintf(r->pub->last_error, sizeof(r->pub->last_error), "%s", msg);
}

static void count(struct runner *r, enum sinkd_ctr c, uint64_t n)
{
	if (r->ctr)
		__atomic_fetch_add(&r->ctr[c], n, __ATOMIC_RELAXED);
}

/* Sleeps ms in slices, so a stop request is not kept waiting. */
static void nap_ms(const struct runner *r, uint64_t ms)
{
	while (ms && !*r->stop) {
		uint64_t n = ms > 100 ? 100 : ms;
		struct timespec ts = { 0, (long)(n * MS) };
		nanosleep(&ts, NULL);
		ms -= n;
	}
}

/* Waits until the durable LSN passes `lsn`, at most timeout_ns. */
static void wait_durable(struct runner *r, uint64_t lsn, uint64_t timeout_ns)
{
	struct shm_ctl *ctl = r->ctl;
	uint32_t seen = futex_seq_enter(&ctl->durable);
	if (shm_load_acquire(&ctl->durable_lsn) > lsn || *r->stop)
		futex_seq_leave(&ctl->durable);
	else
		futex_seq_wait(&ctl->durable, seen, timeout_ns);
}

/* Makes the sink durable up to the cursor, or as far as it says it is,
 * then records (that LSN, blob).  A failed sink commit means the sink went
 * back to its previous commit: the caller rewinds and redelivers.  A failed
 * offset write is only a warning: the stored (LSN, blob) pair stays older
 * but self-consistent, so a restart cuts the sink back to it and
 * redelivers, losing and repeating nothing.  A pair the same as the stored
 * one (a sink holding its records a while) is not written again. */
static enum sink_rc commit(struct runner *r, uint32_t *retry_ms)
{
	struct sink_commit c = { .upto = r->cursor, .stored = r->stored };
	char err[SINK_ERR_LEN], msg[SINK_ERR_LEN + 64];
	enum sink_rc rc = r->d->commit(r->state, &c, retry_ms, err);
	if (rc != SINK_OK) {
		snprintf(msg, sizeof(msg), "commit: %s", err);
		note_error(r, msg);
		if (rc != SINK_FATAL)
			log_warn("sink %s: %s; redelivering from LSN %llu", r->name, msg,
				 (unsigned long long)r->committed);
		free(c.blob);
		return rc;
	}
	if (c.upto > r->cursor) {
		log_warn("sink %s: commit said LSN %llu, past what it was given (%llu): recording %llu", r->name,
			 (unsigned long long)c.upto, (unsigned long long)r->cursor, (unsigned long long)r->cursor);
		c.upto = r->cursor;
	}
	fault_point("sinkd.after_sink_commit");
	count(r, SC_COMMITS, 1);
	int same = c.upto == r->stored && c.blob_len == r->stored_blob_len &&
		   (!c.blob_len || !memcmp(c.blob, r->stored_blob, c.blob_len));
	if (!r->no_offsets && !same) {
		int e = offset_store(r->offset_dir, r->name, c.upto, c.blob, c.blob_len);
		if (e < 0) {
			log_warn("sink %s: %s/%s.offset: %s (kept the previous offset)", r->name, r->offset_dir,
				 r->name, strerror(-e));
		} else {
			shm_store_relaxed(&r->pub->committed_lsn, c.upto);
			r->stored = c.upto;
			free(r->stored_blob);
			r->stored_blob = c.blob;
			r->stored_blob_len = c.blob_len;
			c.blob = NULL;
		}
	}
	free(c.blob);
	r->committed = c.upto;
	return SINK_OK;
}

static int wanted(const struct runner *r, uint16_t topic)
{
	return topics_has(r->topics, topic);
}

struct batch {
	struct sink_record *recs;
	size_t n;
	uint64_t bytes;
	uint64_t end;        /* LSN after the last record read (delivered or not) */
};

/* Reads the instance's records from the cursor up to `limit`, at most one
 * batch.  Ends early at a segment move: records before it live in the
 * previous mapping, which lasts only until the next move. */
static int fill(struct runner *r, struct reader *rd, uint64_t limit, struct batch *b)
{
	uint64_t lsn = r->cursor;
	uint32_t moves = rd->moves;
	b->n = 0;
	b->bytes = 0;
	while (lsn < limit && b->n < r->p.batch_records && b->bytes < r->p.batch_bytes) {
		int e;
		const struct rec_hdr *h = reader_at(rd, lsn, &e);
		if (!h) {
			b->end = lsn;
			return e;
		}
		if (h->type == REC_DATA && wanted(r, h->topic)) {
			struct sink_record *s = &b->recs[b->n++];
			s->lsn = lsn;
			s->seq = h->seq;
			s->ts_ns = h->ts_ns;
			s->srv_ns = h->srv_ns;
			s->device = rec_id(h);
			s->device_len = h->id_len;
			s->payload = rec_payload(h);
			s->payload_len = h->plen;
			s->topic = h->topic;
			b->bytes += h->plen;
		}
		lsn += rec_total(h);
		if (rd->moves != moves)
			break;
	}
	b->end = lsn;
	return 0;
}

static int full(const struct runner *r, const struct batch *b)
{
	return b->n >= r->p.batch_records || b->bytes >= r->p.batch_bytes;
}

/* Lag in records: a second reader counts the instance's records from the
 * cursor towards the durable end, a bounded number per pass, so the count
 * costs a header read per record and never holds up delivery. */
struct scout {
	struct reader rd;
	uint64_t lsn;        /* counted up to here ... */
	uint64_t n;          /* ... n of the instance's records from the cursor */
};

#define SCOUT_STEP 4096

static void scout_step(struct runner *r, struct scout *sc, uint64_t limit)
{
	if (sc->lsn < r->cursor) {
		sc->lsn = r->cursor;
		sc->n = 0;
	}
	int e;
	const struct rec_hdr *h;
	for (int i = 0; i < SCOUT_STEP && sc->lsn < limit && (h = reader_at(&sc->rd, sc->lsn, &e)); i++) {
		if (h->type == REC_DATA && wanted(r, h->topic))
			sc->n++;
		sc->lsn += rec_total(h);
	}
	shm_store_relaxed(&r->pub->lag_records, sc->n);
	shm_store_relaxed(&r->pub->lag_exact, sc->lsn >= limit);
}

/* The cursor moved past `delivered` of the counted records (to `to`). */
static void scout_passed(struct runner *r, struct scout *sc, uint64_t to, uint64_t delivered)
{
	if (sc->lsn >= to && sc->n >= delivered) {
		sc->n -= delivered;
	} else {
		sc->lsn = to;
		sc->n = 0;
	}
	shm_store_relaxed(&r->pub->lag_records, sc->n);
}

/* Back to the last commit after a failure: the same records again, later;
 * a refusal (FAILING) no sooner than retry_max_ms. */
static void rewind_after(struct runner *r, struct scout *sc, int *retrying, enum sink_rc rc, uint32_t delay_ms)
{
	r->cursor = r->rewound_to = r->committed;
	sc->lsn = r->cursor;   /* counted again from there */
	sc->n = 0;
	*retrying = 1;
	set_state(r, rc == SINK_FAILING ? SINK_ST_FAILING : SINK_ST_RETRYING);
	shm_store_relaxed(&r->pub->retries, r->pub->retries + 1);
	shm_store_relaxed(&r->pub->failures, r->pub->failures + 1);
	count(r, SC_RETRIES, 1);
	if (rc == SINK_FAILING && delay_ms < r->p.retry_max_ms)
		delay_ms = r->p.retry_max_ms;
	nap_ms(r, delay_ms);
}

/* The sink said FATAL: this instance stops, the others go on. */
static void stop_fatal(struct runner *r, const char *why)
{
	char err[SINK_ERR_LEN + 64];
	snprintf(err, sizeof(err), "%s", why);   /* why may be the slot's last_error itself */
	note_error(r, err);
	log_error("sink %s: %s; this instance stops (the others go on)", r->name, err);
	count(r, SC_FATAL, 1);
	shm_store_relaxed(&r->pub->failures, r->pub->failures + 1);
	set_state(r, SINK_ST_STOPPED);
}

/* The log's first LSN, when its first segment starts past lsn (what lsn
 * was in has been retired); 0 otherwise. */
static uint64_t retired_past(const struct runner *r, uint64_t lsn)
{
	struct seg_ent *v;
	size_t n;
	if (seg_list(r->wal_dir, &v, &n) < 0)
		return 0;
	uint64_t first = n && v[0].first_lsn > lsn ? v[0].first_lsn : 0;
	free(v);
	return first;
}

struct skip_episode {
	int on;
	uint64_t records, bytes, jumps;
};

static double mib(uint64_t b)
{
	return (double)b / (1 << 20);
}

/* The cursor's records were retired: on to the log's first, counted. */
static void skip_to(struct runner *r, struct skip_episode *ep, uint64_t to)
{
	uint64_t from = r->cursor, recs = 0, known = from;
	struct skipped *v = NULL;
	size_t n = 0;
	if (skipped_load(r->offset_dir, r->name, &v, &n) == 0)
		known = skipped_count(v, n, from, to, &recs);
	free(v);
	char unknown[160] = "";
	if (known < to)
		snprintf(unknown, sizeof(unknown), " (and the records of LSN %llu to %llu, which no ledger counted)",
			 (unsigned long long)known, (unsigned long long)to);
	shm_store_relaxed(&r->pub->skipped_records, r->pub->skipped_records + recs);
	shm_store_relaxed(&r->pub->skipped_bytes, r->pub->skipped_bytes + (to - from));
	count(r, SC_SKIPPED_RECORDS, recs);
	count(r, SC_SKIPPED_BYTES, to - from);
	if (r->policy == LAG_SKIP) {
		if (!ep->on)
			log_warn("sink %s: LSN %llu to %llu was retired before it was delivered (lag_policy = skip, "
				 "lag_cap_bytes %.1f MiB): skipped %llu records, %.1f MiB%s; on from LSN %llu", r->name,
				 (unsigned long long)from, (unsigned long long)to, mib(r->lag_cap_bytes),
				 (unsigned long long)recs, mib(to - from), unknown, (unsigned long long)to);
		ep->on = 1;
		ep->records += recs;
		ep->bytes += to - from;
		ep->jumps++;
		set_state(r, SINK_ST_SKIPPING);
	} else {
		char msg[SINK_ERR_LEN];
		snprintf(msg, sizeof(msg), "LSN %llu to %llu was retired before it was delivered, though this instance "
			 "holds retention (lag_policy = hold): was it out of [sinkd] sinks, or were segments removed "
			 "by hand? skipped %llu records, %.1f MiB%s", (unsigned long long)from, (unsigned long long)to,
			 (unsigned long long)recs, mib(to - from), unknown);
		note_error(r, msg);
		log_error("sink %s: %s; on from LSN %llu", r->name, msg, (unsigned long long)to);
	}
	r->cursor = to;
	shm_store_relaxed(&r->pub->cursor_lsn, r->cursor);
}

/* A skip episode ends once the instance is back within its cap. */
static void skip_check(struct runner *r, struct skip_episode *ep, uint64_t durable)
{
	if (!ep->on || (durable > r->cursor && durable - r->cursor > r->lag_cap_bytes))
		return;
	log_info("sink %s: within lag_cap_bytes again: this episode skipped %llu records, %.1f MiB, in %llu "
		 "jump(s)", r->name, (unsigned long long)ep->records, mib(ep->bytes), (unsigned long long)ep->jumps);
	*ep = (struct skip_episode){ 0 };
	set_state(r, SINK_ST_RUNNING);
}

/* A commit went through after trouble: the episode is over once the
 * offset moved past where it rewound to (a sink that holds records commits
 * fine while the upload that failed still waits) or reached the cursor. */
static void recovered(struct runner *r, int *retrying, const struct skip_episode *ep)
{
	if (!*retrying || (r->committed <= r->rewound_to && r->committed != r->cursor))
		return;
	log_info("sink %s: delivering again", r->name);
	*retrying = 0;
	set_state(r, ep->on ? SINK_ST_SKIPPING : SINK_ST_RUNNING);
}

int runner_run(struct runner *r)
{
	struct reader rd;
	struct batch b = { .recs = malloc(r->p.batch_records * sizeof(*b.recs)) };
	struct backoff bo;
	struct scout sc = { .lsn = 0 };
	struct skip_episode ep = { 0 };
	char err[SINK_ERR_LEN];
	int retrying = 0, read_failing = 0, ret = 0;
	uint64_t last_commit = clock_mono_ns(), first_seen = 0;

	if (!b.recs) {
		log_error("sink %s: out of memory for a batch of %u records", r->name, r->p.batch_records);
		return -ENOMEM;
	}
	backoff_init(&bo, r->p.retry_min_ms, r->p.retry_max_ms);
	reader_init(&rd, r->wal_dir, r->segment_bytes);
	reader_init(&sc.rd, r->wal_dir, r->segment_bytes);
	r->cursor = r->committed = r->stored = r->start_lsn;
	shm_store_relaxed(&r->pub->cursor_lsn, r->cursor);
	set_state(r, SINK_ST_RUNNING);
	while (!*r->stop) {
		uint64_t durable = shm_load_acquire(&r->ctl->durable_lsn);
		uint64_t limit = r->end_lsn && r->end_lsn < durable ? r->end_lsn : durable;
		uint64_t now = clock_mono_ns();
		if (r->end_lsn && r->cursor >= r->end_lsn)
			break;
		skip_check(r, &ep, durable);
		if (r->cursor >= limit) {
			/* caught up: commit when due, not each time (that would be a
			 * flush of the sink's output after every group commit, and
			 * the WAL's fdatasync would queue behind it) */
			uint64_t every = r->p.commit_ms * MS, wait = 100 * MS;
			shm_store_relaxed(&r->pub->oldest_ns, 0);
			scout_step(r, &sc, limit);
			if (r->committed != r->cursor) {
				if (now - last_commit >= every) {
					uint32_t retry_ms = backoff_next(&bo);
					last_commit = now;
					enum sink_rc rc = commit(r, &retry_ms);
					if (rc == SINK_FATAL) {
						stop_fatal(r, r->pub->last_error);
						ret = -EIO;
						goto out;
					}
					if (rc != SINK_OK) {
						rewind_after(r, &sc, &retrying, rc, retry_ms);
						continue;
					}
					recovered(r, &retrying, &ep);
				} else if (every - (now - last_commit) < wait) {
					wait = every - (now - last_commit);
				}
			}
			wait_durable(r, r->cursor, wait);
			continue;
		}
		int e = fill(r, &rd, limit, &b);
		uint64_t first;
		if (e == -ENOENT && b.n == 0 && (first = retired_past(r, b.end))) {
			r->cursor = b.end;   /* what it passed was not its to deliver */
			if (r->end_lsn) {
				snprintf(err, sizeof(err), "LSN %llu was retired before the backfill read it (the log "
					 "now starts at LSN %llu)", (unsigned long long)r->cursor,
					 (unsigned long long)first);
				note_error(r, err);
				ret = -ENOENT;
				goto out;
			}
			if (r->fresh && r->cursor == r->start_lsn && r->committed == r->start_lsn) {
				log_info("sink %s: a new instance, and the log starts at LSN %llu (what came before was "
					 "retired before it was configured): starting there", r->name,
					 (unsigned long long)first);
				r->cursor = first;
				shm_store_relaxed(&r->pub->cursor_lsn, r->cursor);
			} else {
				skip_to(r, &ep, first);
			}
			r->fresh = 0;
			sc.lsn = r->cursor;
			sc.n = 0;
			continue;
		}
		if (e < 0 && b.n == 0) {
			if (!read_failing++) {
				snprintf(err, sizeof(err), "cannot read the log at LSN %llu in %s: %s",
					 (unsigned long long)b.end, r->wal_dir,
					 e == -ENOENT ? "no segment holds it" : strerror(-e));
				note_error(r, err);
				log_error("sink %s: %s", r->name, err);
			}
			nap_ms(r, 1000);
			continue;
		}
		read_failing = 0;
		if (b.n == 0) {
			scout_passed(r, &sc, b.end, 0);
			r->cursor = b.end;   /* other topics, MARKs */
			shm_store_relaxed(&r->pub->cursor_lsn, r->cursor);
			continue;
		}
		shm_store_relaxed(&r->pub->oldest_ns, b.recs[0].srv_ns);
		/* a partial batch waits up to batch_ms for more records, from when
		 * its first record was seen */
		if (!full(r, &b) && b.end >= limit && r->p.batch_ms && !retrying) {
			if (!first_seen)
				first_seen = now;
			if (now - first_seen < r->p.batch_ms * MS && !r->end_lsn) {
				wait_durable(r, limit, first_seen + r->p.batch_ms * MS - now);
				continue;
			}
		}
		first_seen = 0;
		scout_step(r, &sc, limit);
		uint32_t retry_ms = backoff_next(&bo);
		enum sink_rc rc = r->d->deliver(r->state, b.recs, b.n, &retry_ms, err);
		if (rc == SINK_OK) {
			fault_point("sinkd.after_deliver");
			backoff_reset(&bo);
			scout_passed(r, &sc, b.end, b.n);
			r->cursor = b.end;
			r->delivered_records += b.n;
			r->delivered_bytes += b.bytes;
			count(r, SC_RECORDS, b.n);
			count(r, SC_BYTES, b.bytes);
			count(r, SC_BATCHES, 1);
			shm_store_relaxed(&r->pub->records, r->pub->records + b.n);
			shm_store_relaxed(&r->pub->bytes, r->pub->bytes + b.bytes);
			shm_store_relaxed(&r->pub->cursor_lsn, r->cursor);
			/* after trouble, only a commit proves the sink is back: a
			 * buffered delivery can succeed while its disk is still full */
			now = clock_mono_ns();
			if (retrying || now - last_commit >= r->p.commit_ms * MS) {
				last_commit = now;
				retry_ms = backoff_next(&bo);
				rc = commit(r, &retry_ms);
				if (rc == SINK_FATAL) {
					stop_fatal(r, r->pub->last_error);
					ret = -EIO;
					goto out;
				}
				if (rc != SINK_OK)
					rewind_after(r, &sc, &retrying, rc, retry_ms);
				else
					recovered(r, &retrying, &ep);
			}
			continue;
		}
		if (rc == SINK_FATAL) {
			stop_fatal(r, err);
			ret = -EIO;
			goto out;
		}
		note_error(r, err);
		if (!retrying)
			log_warn("sink %s: %s; retrying from LSN %llu", r->name, err, (unsigned long long)r->committed);
		rewind_after(r, &sc, &retrying, rc, retry_ms);
	}
	if (r->committed != r->cursor && !retrying) {
		uint32_t retry_ms = 0;
		commit(r, &retry_ms);
	}
	set_state(r, SINK_ST_OFF);
out:
	free(b.recs);
	free(r->stored_blob);
	r->stored_blob = NULL;
	reader_close(&rd);
	reader_close(&sc.rd);
	return ret;
}
