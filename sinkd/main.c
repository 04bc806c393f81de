/* sinkd — the consumers.  Each configured sink runs in its own thread with
 * its own cursor and committed offset, so a slow or failing sink lags and
 * catches up alone while the others go on. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/offset.h"
#include "common/settings.h"
#include "shm/atomic.h"
#include "shm/shm.h"
#include "sinkd/reader.h"
#include "sinkd/sink.h"

#define BATCH_MAX 1024
#define BATCH_BYTES (4u << 20)

static volatile int stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct sink_run {
	const struct sink_desc *d;
	void *cfg;
	void *state;
	struct shm_ctl *ctl;
	struct shm_sink *pub;
	const struct settings *s;
	char sinks_dir[512];
	uint64_t cursor, committed;
	pthread_t th;
	int started;
};

static void log_waiting(const char *why)
{
	log_info("%s", why);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sinkd [-c FILE]\n"
		"\n"
		"The consumer stage of module-ingest: reads committed records from the WAL\n"
		"segments and delivers them to every sink named in [sinkd] sinks, each with\n"
		"its own committed offset in <data dir>/sinks/<name>.offset.  Normally run by\n"
		"run/supervise.  SIGTERM commits and stops.\n"
		"\n"
		"  -c, --config FILE  config file (default: built-in defaults)\n"
		"  -h, --help         this text\n"
		"\n"
		"Sinks:\n");
	for (const struct sink_desc *const *d = sink_registry; *d; d++) {
		fprintf(f, "  %-10s %s\n", (*d)->name, (*d)->description);
		cfg_print_help(f, (*d)->opts, (*d)->nopts);
	}
	fprintf(f, "\nConfig keys (INGEST_<SECTION>_<KEY> overrides any of them):\n");
	cfg_print_help(f, settings_opts, settings_nopts);
}

/* Makes the sink durable up to the cursor, then records (cursor, blob).
 * A failed sink commit means the sink went back to its previous commit: the
 * caller rewinds and redelivers.  A failed offset write is only a warning:
 * the stored (LSN, blob) pair stays older but self-consistent, so a restart
 * cuts the sink back to it and redelivers, losing and repeating nothing. */
static int commit(struct sink_run *sr)
{
	void *blob = NULL;
	size_t len = 0;
	char err[SINK_ERR_LEN];
	int r = sr->d->commit(sr->state, &blob, &len, err);
	if (r < 0) {
		log_warn("sink %s: commit: %s; redelivering from LSN %llu", sr->d->name, err,
			 (unsigned long long)sr->committed);
		return r;
	}
	fault_point("sinkd.after_sink_commit");
	__atomic_fetch_add(&shm_ctr(sr->ctl, STAGE_SINKD)[SC_COMMITS], 1, __ATOMIC_RELAXED);
	r = offset_store(sr->sinks_dir, sr->d->name, sr->cursor, blob, len);
	free(blob);
	if (r < 0)
		log_warn("sink %s: %s/%s.offset: %s (kept the previous offset)", sr->d->name, sr->sinks_dir,
			 sr->d->name, strerror(-r));
	sr->committed = sr->cursor;
	if (r == 0)
		shm_store_relaxed(&sr->pub->committed_lsn, sr->committed);
	return 0;
}

static void nap_ms(uint32_t ms)
{
	/* in slices, so a stop request is not kept waiting */
	while (ms && !stop_requested) {
		uint32_t n = ms > 100 ? 100 : ms;
		struct timespec ts = { 0, (long)n * 1000000L };
		nanosleep(&ts, NULL);
		ms -= n;
	}
}

static void nap_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);   /* a stop signal cuts it short */
}

static void *sink_thread(void *arg)
{
	struct sink_run *sr = arg;
	struct shm_ctl *ctl = sr->ctl;
	uint64_t *ctr = shm_ctr(ctl, STAGE_SINKD);
	struct reader rd;
	struct sink_item *items = malloc(BATCH_MAX * sizeof(*items));
	char wal_dir[512], err[SINK_ERR_LEN];
	uint32_t backoff = 100;
	uint64_t last_commit = clock_mono_ns(), caught_up_at = 0;
	uint64_t batch_ns = (uint64_t)sr->s->sink_batch_ms * 1000000ull;
	int retrying = 0, read_failing = 0;

	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", sr->s->data_dir);
	reader_init(&rd, wal_dir, sr->s->segment_bytes);
	shm_store_relaxed(&sr->pub->state, SINK_ST_RUNNING);
	while (!stop_requested && items) {
		uint64_t durable = shm_load_acquire(&ctl->durable_lsn);
		if (sr->cursor >= durable) {
			/* caught up: commit when due, not each time (that would be
			 * a flush of the sink's disk after every group commit, and
			 * the WAL's fdatasync would queue behind it) */
			uint64_t now = clock_mono_ns(), every = (uint64_t)sr->s->sink_commit_ms * 1000000ull;
			uint64_t wait = 100 * 1000 * 1000ull;
			if (sr->committed != sr->cursor) {
				if (now - last_commit >= every) {
					last_commit = now;
					if (commit(sr) < 0) {
						sr->cursor = sr->committed;
						retrying = 1;
						nap_ms(backoff);
						backoff = backoff >= 15000 ? 30000 : backoff * 2;
						continue;
					}
				} else if (every - (now - last_commit) < wait) {
					wait = every - (now - last_commit);
				}
			}
			uint32_t seen = futex_seq_enter(&ctl->durable);
			if (shm_load_acquire(&ctl->durable_lsn) > sr->cursor || stop_requested)
				futex_seq_leave(&ctl->durable);
			else
				futex_seq_wait(&ctl->durable, seen, wait);
			caught_up_at = now;
			continue;
		}
		if (caught_up_at && batch_ns && !stop_requested) {
			/* Caught up a moment ago: let records gather for batch_ms
			 * instead of waking at every group commit.  Those wake-ups
			 * fall exactly when ingestd sends ACKs and the devices read
			 * them, and a sink may lag; the ACK path may not. */
			uint64_t since = clock_mono_ns() - caught_up_at;
			if (since < batch_ns)
				nap_ns(batch_ns - since);
			durable = shm_load_acquire(&ctl->durable_lsn);
		}
		caught_up_at = 0;
		size_t n = 0;
		uint64_t lsn = sr->cursor, bytes = 0;
		uint32_t moves = rd.moves;
		while (lsn < durable && n < BATCH_MAX && bytes < BATCH_BYTES) {
			int e;
			const struct rec_hdr *h = reader_at(&rd, lsn, &e);
			if (!h) {
				if (!read_failing++)
					log_error("sink %s: cannot read the log at LSN %llu in %s: %s", sr->d->name,
						  (unsigned long long)lsn, wal_dir,
						  e == -ENOENT ? "no segment holds it" : strerror(-e));
				break;
			}
			read_failing = 0;
			if (h->type == REC_DATA) {
				items[n].lsn = lsn;
				items[n].rec = h;
				n++;
				bytes += h->plen;
			}
			lsn += rec_total(h);
			/* items before a segment move are in the previous mapping,
			 * which lives only until the next move: end the batch here */
			if (rd.moves != moves)
				break;
		}
		if (read_failing) {
			nap_ms(1000);
			continue;
		}
		if (n == 0) {
			sr->cursor = lsn;
			continue;
		}
		uint32_t retry_ms = backoff;
		uint32_t jitter;
		if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) == sizeof(jitter))
			retry_ms += jitter % (backoff / 2 + 1);
		enum sink_rc rc = sr->d->deliver(sr->state, items, n, &retry_ms, err);
		if (rc == SINK_OK) {
			fault_point("sinkd.after_deliver");
			sr->cursor = lsn;
			__atomic_fetch_add(&ctr[SC_RECORDS], n, __ATOMIC_RELAXED);
			__atomic_fetch_add(&ctr[SC_BYTES], bytes, __ATOMIC_RELAXED);
			__atomic_fetch_add(&ctr[SC_BATCHES], 1, __ATOMIC_RELAXED);
			shm_store_relaxed(&sr->pub->records, sr->pub->records + n);
			/* after trouble, only a commit proves the sink is back: a
			 * buffered delivery can succeed while the disk is still full */
			uint64_t now = clock_mono_ns();
			if (retrying || now - last_commit >= (uint64_t)sr->s->sink_commit_ms * 1000000ull) {
				last_commit = now;
				if (commit(sr) < 0) {
					sr->cursor = sr->committed;
					retrying = 1;
					shm_store_relaxed(&sr->pub->state, SINK_ST_RETRYING);
					nap_ms(backoff);
					backoff = backoff >= 15000 ? 30000 : backoff * 2;
				} else if (retrying) {
					log_info("sink %s: delivering again", sr->d->name);
					retrying = 0;
					backoff = 100;
					shm_store_relaxed(&sr->pub->state, SINK_ST_RUNNING);
				}
			}
			continue;
		}
		if (rc == SINK_FATAL) {
			log_error("sink %s: %s; this sink stops (the others go on)", sr->d->name, err);
			__atomic_fetch_add(&ctr[SC_FATAL], 1, __ATOMIC_RELAXED);
			shm_store_relaxed(&sr->pub->state, SINK_ST_FAILED);
			free(items);
			reader_close(&rd);
			return NULL;
		}
		if (!retrying)
			log_warn("sink %s: %s; retrying from LSN %llu", sr->d->name, err,
				 (unsigned long long)sr->committed);
		retrying = 1;
		shm_store_relaxed(&sr->pub->state, SINK_ST_RETRYING);
		shm_store_relaxed(&sr->pub->retries, sr->pub->retries + 1);
		__atomic_fetch_add(&ctr[SC_RETRIES], 1, __ATOMIC_RELAXED);
		sr->cursor = sr->committed;
		nap_ms(retry_ms);
		backoff = backoff >= 15000 ? 30000 : backoff * 2;
	}
	if (sr->committed != sr->cursor && !retrying)
		commit(sr);
	shm_store_relaxed(&sr->pub->state, SINK_ST_OFF);
	free(items);
	reader_close(&rd);
	return NULL;
}

static int start_sink(struct sink_run *sr, cfg_t *cfg, char err[CFG_ERR_LEN])
{
	void *blob = NULL;
	size_t blob_len = 0;
	uint64_t lsn = 0;
	char serr[SINK_ERR_LEN];
	int r = offset_load(sr->sinks_dir, sr->d->name, &lsn, &blob, &blob_len);
	if (r < 0 && r != -ENOENT) {
		snprintf(err, CFG_ERR_LEN, "sink %s: %s/%s.offset: %s", sr->d->name, sr->sinks_dir, sr->d->name,
			 r == -EBADMSG ? "damaged" : strerror(-r));
		return r;
	}
	(void)cfg;
	r = sr->d->init(&sr->state, sr->cfg, &(struct sink_env){ sr->s->data_dir, sr->d->name }, blob, blob_len, serr);
	free(blob);
	if (r < 0) {
		snprintf(err, CFG_ERR_LEN, "sink %s: %s", sr->d->name, serr);
		return r;
	}
	uint64_t durable = shm_load_acquire(&sr->ctl->durable_lsn);
	if (lsn > durable) {
		log_warn("sink %s: committed offset %llu is past the end of the log (%llu): the log was cut; "
			 "resuming at its end", sr->d->name, (unsigned long long)lsn, (unsigned long long)durable);
		lsn = durable;
	}
	sr->cursor = sr->committed = lsn;
	snprintf(sr->pub->name, sizeof(sr->pub->name), "%s", sr->d->name);
	shm_store_relaxed(&sr->pub->committed_lsn, lsn);
	log_info("sink %s: resuming at LSN %llu", sr->d->name, (unsigned long long)lsn);
	if ((r = pthread_create(&sr->th, NULL, sink_thread, sr)) != 0) {
		snprintf(err, CFG_ERR_LEN, "sink %s: thread: %s", sr->d->name, strerror(r));
		return -r;
	}
	sr->started = 1;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	int o, ret = 2;   /* config errors; 1 once running */
	while ((o = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("sinkd", o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	struct settings s;
	cfg_t *cfg = NULL;
	char err[CFG_ERR_LEN > SHM_ERR_LEN ? CFG_ERR_LEN : SHM_ERR_LEN];
	if (settings_load(config, &s, &cfg, 0, err) < 0) {
		fprintf(stderr, "sinkd: %s\n", err);
		log_status("%s", err);
		return 2;
	}
	struct sink_run runs[SHM_MAX_SINKS];
	unsigned nruns = 0;
	memset(runs, 0, sizeof(runs));
	/* every known sink's table is applied, enabled or not, so a typo in
	 * any [sink_*] section is caught */
	void *cfgs[16] = { 0 };
	unsigned k = 0;
	for (const struct sink_desc *const *d = sink_registry; *d && k < 16; d++, k++) {
		cfgs[k] = calloc(1, (*d)->cfg_size);
		if (!cfgs[k] || cfg_apply(cfg, (*d)->opts, (*d)->nopts, cfgs[k], err) < 0) {
			fprintf(stderr, "sinkd: %s\n", cfgs[k] ? err : "out of memory");
			goto out;
		}
	}
	if (cfg_check_unused(cfg, NULL, err) < 0) {
		fprintf(stderr, "sinkd: %s\n", err);
		log_status("%s", err);
		goto out;
	}
	char list[sizeof(s.sinks)], *save = NULL;
	memcpy(list, s.sinks, sizeof(list));
	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		const struct sink_desc *d = sink_find(tok);
		if (!d) {
			fprintf(stderr, "sinkd: [sinkd] sinks: unknown sink '%s' (known:", tok);
			for (const struct sink_desc *const *x = sink_registry; *x; x++)
				fprintf(stderr, " %s", (*x)->name);
			fprintf(stderr, ")\n");
			goto out;
		}
		if (nruns == SHM_MAX_SINKS) {
			fprintf(stderr, "sinkd: [sinkd] sinks: at most %d sinks\n", SHM_MAX_SINKS);
			goto out;
		}
		for (unsigned i = 0; i < nruns; i++)
			if (runs[i].d == d) {
				fprintf(stderr, "sinkd: [sinkd] sinks: '%s' named twice\n", tok);
				goto out;
			}
		runs[nruns].d = d;
		for (unsigned i = 0; sink_registry[i]; i++)
			if (sink_registry[i] == d)
				runs[nruns].cfg = cfgs[i];
		nruns++;
	}
	ret = 1;
	if (log_open("sinkd", s.log_file, (enum log_level)log_level_parse(s.log_level)) < 0) {
		fprintf(stderr, "sinkd: log file %s: %s\n", s.log_file, strerror(errno));
		goto out;
	}
	fault_init();
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	shm_region_t reg = { .fd = -1 };
	struct shm_geom g = { .nrings = (uint32_t)s.workers, .ndevices = (uint32_t)s.devices, .ring_bytes = s.ring_bytes };
	int r = shm_attach_stage(s.instance, &g, s.data_dir, &stop_requested, log_waiting, &reg, err);
	if (r == -EINTR) {
		ret = 0;
		goto out;
	}
	if (r < 0) {
		log_error("%s", err);
		ret = MI_EXIT_STARTUP;
		goto out;
	}
	shm_stage_start(reg.ctl, STAGE_SINKD);
	char sinks_dir[512];
	snprintf(sinks_dir, sizeof(sinks_dir), "%s/sinks", s.data_dir);
	if (mkdir(sinks_dir, 0700) < 0 && errno != EEXIST) {
		log_error("%s: %s", sinks_dir, strerror(errno));
		goto out_shm;
	}
	for (unsigned i = 0; i < nruns && !stop_requested; i++) {
		runs[i].ctl = reg.ctl;
		runs[i].pub = &reg.ctl->sink[i];
		runs[i].s = &s;
		snprintf(runs[i].sinks_dir, sizeof(runs[i].sinks_dir), "%s", sinks_dir);
		if (start_sink(&runs[i], cfg, err) < 0) {
			log_error("%s", err);
			stop_requested = 1;
		}
	}
	while (!stop_requested) {
		shm_stage_heartbeat(reg.ctl, STAGE_SINKD);
		nap_ms(500);
	}
	ret = 0;
	for (unsigned i = 0; i < nruns; i++) {
		if (runs[i].started) {
			pthread_join(runs[i].th, NULL);
			runs[i].d->exit(runs[i].state);
		} else {
			if (runs[i].state)
				runs[i].d->exit(runs[i].state);
			ret = 1;
		}
	}
	if (ret == 0)
		log_info("stopped");
out_shm:
	shm_stage_stop(reg.ctl, STAGE_SINKD);
	if (ret == 0 && shm_release(&reg, err) >= 0 && err[0])
		log_info("%s", err);
	shm_close_region(&reg);
out:
	for (unsigned i = 0; i < 16; i++)
		free(cfgs[i]);
	cfg_close(cfg);
	return ret;
}
