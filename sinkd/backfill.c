#include "sinkd/backfill.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/seg.h"
#include "flusherd/ckpt.h"
#include "shm/atomic.h"
#include "shm/shm.h"
#include "sinkd/reader.h"
#include "sinkd/runner.h"

/* The durable end of this data directory's log: what its running pipeline
 * publishes, else its last checkpoint. */
static uint64_t durable_end(const struct settings *s)
{
	shm_region_t ro = { .fd = -1 };
	char err[SHM_ERR_LEN];
	struct stat st;
	uint64_t end = 0;
	int have = 0;
	if (shm_attach_ro(s->instance, &ro, err) == 0) {
		if (stat(s->data_dir, &st) == 0 && (uint64_t)st.st_dev == ro.ctl->data_dev &&
		    (uint64_t)st.st_ino == ro.ctl->data_ino && shm_load_acquire(&ro.ctl->ready)) {
			end = shm_load_acquire(&ro.ctl->durable_lsn);
			have = 1;
		}
		shm_close_region(&ro);
	}
	struct meta m;
	if (!have && meta_load(s->data_dir, &m) == 0)
		end = m.ckpt_lsn;
	return end;
}

/* The LSN range [from, to) the arguments name, within [first, end). */
static int resolve(const struct backfill_args *a, struct reader *rd, uint64_t first, uint64_t end,
		   uint64_t *ret_from, uint64_t *ret_to, char err[CFG_ERR_LEN])
{
	uint64_t from = a->from_lsn, to = a->to_lsn && a->to_lsn < end ? a->to_lsn : end;
	int e;
	const struct rec_hdr *h;
	/* the oldest record still held, for the message about retired ranges */
	uint64_t first_ns = 0;
	for (uint64_t lsn = first; lsn < end && (h = reader_at(rd, lsn, &e)); lsn += rec_total(h))
		if (h->type == REC_DATA) {
			first_ns = h->srv_ns;
			break;
		}
	char t[40] = "no record";
	if (first_ns)
		clock_format_rfc3339(first_ns, t, sizeof(t));
	if ((!a->by_since && from < first) || (a->by_since && first > 0 && first_ns && a->since_ns < first_ns)) {
		snprintf(err, CFG_ERR_LEN, "the range starts before the log: retention retired everything "
			 "before LSN %llu (server time %s), the first still held", (unsigned long long)first, t);
		return -ERANGE;
	}
	if (a->by_since || a->by_until) {
		uint64_t lsn = first;
		int found_from = !a->by_since;
		if (a->by_since)
			from = end;
		while (lsn < end && (h = reader_at(rd, lsn, &e))) {
			if (h->type == REC_DATA) {
				if (!found_from && h->srv_ns >= a->since_ns) {
					from = lsn;
					found_from = 1;
				}
				if (a->by_until && h->srv_ns >= a->until_ns) {
					to = lsn;
					break;
				}
			}
			lsn += rec_total(h);
		}
	} else if (from < end && !reader_at(rd, from, &e)) {
		snprintf(err, CFG_ERR_LEN, "--from-lsn %llu: not where a record starts (flusherd --replay --dump "
			 "lists them)", (unsigned long long)from);
		return -EINVAL;
	}
	*ret_from = from;
	*ret_to = to > from ? to : from;
	return 0;
}

struct job {
	struct runner r;
	int ret;
	int done;
};

static void *job_main(void *arg)
{
	struct job *j = arg;
	j->ret = runner_run(&j->r);
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

int backfill_run(const struct settings *s, struct sink_inst *in, const struct backfill_args *a,
		 char err[CFG_ERR_LEN])
{
	char wal_dir[512], sinks_dir[512];
	struct seg_ent *segs = NULL;
	size_t nseg = 0;
	struct reader rd;
	struct shm_ctl *ctl = NULL;
	struct shm_sink pub;
	void *state = NULL;
	int ret = MI_EXIT_STARTUP;

	if (!in->d) {
		snprintf(err, CFG_ERR_LEN, "%s", in->load_err);
		return MI_EXIT_STARTUP;
	}
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", s->data_dir);
	snprintf(sinks_dir, sizeof(sinks_dir), "%s/sinks", s->data_dir);
	int r = seg_list(wal_dir, &segs, &nseg);
	if (r < 0) {
		snprintf(err, CFG_ERR_LEN, "%s: %s", wal_dir, strerror(-r));
		return MI_EXIT_STARTUP;
	}
	uint64_t end = durable_end(s), first = nseg ? segs[0].first_lsn : 0, from = 0, to = 0;
	free(segs);
	reader_init(&rd, wal_dir, s->segment_bytes);
	r = resolve(a, &rd, first, end, &from, &to, err);
	reader_close(&rd);
	if (r < 0)
		goto out;

	struct sink_env env;
	struct meta m = { 0 };
	meta_load(s->data_dir, &m);   /* flusherd made it before any segment */
	instance_env(&env, in, s, from, m.log_id, SINK_ENV_BACKFILL);
	env.backfill_from = from;
	env.backfill_to = to;
	char serr[SINK_ERR_LEN];
	if (in->d->init(&state, in->cfg, &env, NULL, 0, serr) < 0) {
		snprintf(err, CFG_ERR_LEN, "sink %s: init: %s", in->name, serr);
		state = NULL;
		goto out;
	}
	void *mem;
	if (posix_memalign(&mem, 4096, sizeof(*ctl))) {
		snprintf(err, CFG_ERR_LEN, "out of memory");
		goto out;
	}
	ctl = memset(mem, 0, sizeof(*ctl));
	ctl->durable_lsn = to;
	memset(&pub, 0, sizeof(pub));
	struct job j = { .r = {
		.name = in->name, .d = in->d, .state = state, .p = in->p, .topics = in->topics, .ctl = ctl,
		.pub = &pub, .wal_dir = wal_dir, .offset_dir = sinks_dir, .segment_bytes = s->segment_bytes,
		.stop = a->stop, .start_lsn = from, .end_lsn = to, .no_offsets = 1,
	} };
	uint64_t t0 = clock_mono_ns();
	if (from < to) {
		pthread_t th;
		if ((r = pthread_create(&th, NULL, job_main, &j)) != 0) {
			snprintf(err, CFG_ERR_LEN, "thread: %s", strerror(r));
			goto out;
		}
		/* the runner's cursor, read while it runs: a progress figure */
		while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE)) {
			struct timespec ts = { 0, 200 * 1000 * 1000 };
			nanosleep(&ts, NULL);
			uint64_t cur = __atomic_load_n(&pub.cursor_lsn, __ATOMIC_RELAXED);
			if (a->progress && cur >= from)
				fprintf(stderr, "\rbackfill %s: %5.1f%%  LSN %llu of [%llu, %llu)  %llu records ", in->name,
					100.0 * (double)(cur - from) / (double)(to - from), (unsigned long long)cur,
					(unsigned long long)from, (unsigned long long)to,
					(unsigned long long)__atomic_load_n(&pub.records, __ATOMIC_RELAXED));
		}
		pthread_join(th, NULL);
		if (a->progress)
			fprintf(stderr, "\n");
		if (j.ret < 0) {
			snprintf(err, CFG_ERR_LEN, "sink %s: %.*s", in->name, (int)sizeof(pub.last_error),
				 pub.last_error);
			ret = 1;
			goto out;
		}
	}
	if (*a->stop && j.r.cursor < to) {
		snprintf(err, CFG_ERR_LEN, "stopped at LSN %llu of [%llu, %llu): %llu records delivered",
			 (unsigned long long)j.r.cursor, (unsigned long long)from, (unsigned long long)to,
			 (unsigned long long)j.r.delivered_records);
		ret = 1;
		goto out;
	}
	printf("backfill %s: %llu records, %llu bytes, LSN [%llu, %llu), %.3f s\n", in->name,
	       (unsigned long long)j.r.delivered_records, (unsigned long long)j.r.delivered_bytes,
	       (unsigned long long)from, (unsigned long long)to, (double)(clock_mono_ns() - t0) / 1e9);
	ret = 0;
out:
	if (state)
		in->d->exit(state);
	free(ctl);
	return ret;
}
