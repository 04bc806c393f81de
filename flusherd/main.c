/* flusherd — the only writer of the write-ahead log.
 *
 * Drains the shared-memory rings into WAL segments, commits in groups (one
 * fdatasync for everything that arrived meanwhile) and publishes how far
 * each ring and the log are durable.  Owns recovery and --replay.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/settings.h"
#include "flusherd/ckpt.h"
#include "flusherd/commit.h"
#include "flusherd/recover.h"
#include "flusherd/replay.h"
#include "flusherd/retire.h"
#include "flusherd/wal.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/shm.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: flusherd [-c FILE] [--replay [--dump] [--repair]]\n"
		"\n"
		"The write-ahead-log stage of module-ingest: drains the shared-memory rings\n"
		"into data/wal/*.seg, commits in groups (fdatasync) and publishes durable\n"
		"positions so ingestd can acknowledge.  Normally run by run/supervise.\n"
		"\n"
		"  -c, --config FILE  config file (default: built-in defaults)\n"
		"      --replay       verify every segment and report damage (file, offset);\n"
		"                     exit 0 if the log is whole, 1 if damaged\n"
		"      --dump         with --replay: one JSON object per DATA record on stdout\n"
		"                     (lsn, device, topic, seq, ts_ns, len, crc_ok)\n"
		"      --repair       with --replay: cut the log at the first damaged record\n"
		"                     (flusherd must not be running)\n"
		"  -h, --help         this text\n"
		"\n"
		"Config keys (INGEST_<SECTION>_<KEY> overrides any of them):\n");
	cfg_print_help(f, settings_opts, settings_nopts);
}

static int mkdir_p(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int take_lock(const char *wal_dir)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/LOCK", wal_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return fd;
}

/* Housekeeping thread: checkpoints, the spare segment and retention.
 *
 * Checkpoints run in their own thread: their fsyncs never hold up a group
 * commit.  They read only what the commit loop publishes in shm: durable_lsn
 * first, then each ring's released position.  A position read that way may
 * be newer than the LSN, never older, and the MARK that made it durable lies
 * after that LSN, so recovery (which scans from the LSN) always reaches it.
 *
 * Retention (flusherd/retire.h) runs here too, off the commit path, every
 * RETAIN_MS: within a second of the last holder moving past a segment.  It
 * is handed done_lsn, the checkpoint this thread last wrote and synced.
 * It also runs as soon as a rotation took the spare, before a new spare
 * is begun: the segment it retires then is recycled as the next spare,
 * and no segment of zeros is written. */
struct checkpointer {
	const struct settings *s;
	struct shm_ctl *ctl;
	uint64_t log_id;
	pthread_t th;
	int stop;
	uint64_t done_lsn;
	struct retirer *rt;
};

static int checkpoint(struct checkpointer *k)
{
	struct shm_ctl *ctl = k->ctl;
	struct meta m;
	memset(&m, 0, sizeof(m));
	m.nrings = ctl->nrings;
	m.log_id = k->log_id;
	m.ckpt_lsn = shm_load_acquire(&ctl->durable_lsn);
	m.shm_id = ctl->shm_id;
	for (uint32_t i = 0; i < ctl->nrings; i++)
		m.pos[i] = shm_load_acquire(&shm_ring_hdr(ctl, i)->released);
	/* devices first: meta then never points past what the devices file knows */
	int r = devices_store(k->s->data_dir, ctl, m.ckpt_lsn);
	if (r == 0)
		r = meta_store(k->s->data_dir, &m);
	if (r == 0) {
		__atomic_fetch_add(&shm_ctr(ctl, STAGE_FLUSHERD)[FC_CHECKPOINTS], 1, __ATOMIC_RELAXED);
		k->done_lsn = m.ckpt_lsn;
	} else {
		log_warn("checkpoint %s/meta: %s", k->s->data_dir, strerror(-r));
	}
	return r;
}

/* The spare is written at twice the log's recent rate (at least 4 MiB/s),
 * so it is ready within about half a segment's life without its writes
 * crowding the group commits' flushes; at full throughput that is as fast
 * as the disk goes, which is what a full-rate log needs anyway. */
#define SPARE_MIN_RATE (4ull << 20)
#define TICK_MS 20
#define RETAIN_MS 250

static void *checkpoint_main(void *arg)
{
	struct checkpointer *k = arg;
	uint64_t slept = 0, since_retain = 0, last_lsn = shm_load_acquire(&k->ctl->durable_lsn), rate = 0;
	uint64_t *ctr = shm_ctr(k->ctl, STAGE_FLUSHERD), rotations = __atomic_load_n(&ctr[FC_SEGMENTS], __ATOMIC_RELAXED);
	int spare_err = 0, spare_wait = 0;
	struct wal_spare sp = { .fd = -1 };
	char wal_dir[512];
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", k->s->data_dir);
	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
		uint64_t lsn = shm_load_acquire(&k->ctl->durable_lsn);
		uint64_t tick_rate = lsn > last_lsn ? (lsn - last_lsn) * (1000 / TICK_MS) : 0;
		last_lsn = lsn;
		rate = (rate * 7 + tick_rate) / 8;
		uint64_t pace = 2 * rate > SPARE_MIN_RATE ? 2 * rate : SPARE_MIN_RATE;
		uint64_t rot = __atomic_load_n(&ctr[FC_SEGMENTS], __ATOMIC_RELAXED);
		if (retire_enabled(k->s) && (since_retain >= RETAIN_MS || rot != rotations)) {
			since_retain = 0;
			rotations = rot;
			retire_run(k->rt, k->done_lsn, shm_load_acquire(&k->ctl->durable_lsn), &sp);
		}
		if (spare_wait > 0)
			spare_wait--;
		if (spare_wait == 0) {
			int r = wal_spare_step(&sp, wal_dir, k->s->segment_bytes, pace / (1000 / TICK_MS));
			if (r < 0 && r != spare_err)
				log_warn("%s/spare: %s; new segments grow as they fill (slower syncs)", wal_dir,
					 strerror(-r));
			if (r < 0)
				spare_wait = 1000 / TICK_MS;   /* a full disk is not fixed in 20 ms */
			spare_err = r < 0 ? r : 0;
		}
		struct timespec ts = { 0, TICK_MS * 1000 * 1000 };
		nanosleep(&ts, NULL);
		slept += TICK_MS;
		since_retain += TICK_MS;
		if (slept < (uint64_t)k->s->checkpoint_ms)
			continue;
		slept = 0;
		if (shm_load_acquire(&k->ctl->durable_lsn) != k->done_lsn)
			checkpoint(k);
	}
	wal_spare_close(&sp);
	return NULL;
}

/* Waits for records or a stop request, at most 100 ms. */
static void idle_wait(struct shm_ctl *ctl, struct committer *c)
{
	uint32_t seen = futex_seq_enter(&ctl->work);
	if (commit_pending(c) || stop_requested) {
		futex_seq_leave(&ctl->work);
		return;
	}
	futex_seq_wait(&ctl->work, seen, 100 * 1000 * 1000ull);
}

static void stall(struct shm_ctl *ctl, int err, const char *what, const char *path, int *stalled,
		  uint64_t *since)
{
	if (!*stalled) {
		log_error("%s %s: %s; acks stop until it succeeds (retrying)", what, path, strerror(-err));
		shm_count(&shm_ctr(ctl, STAGE_FLUSHERD)[FC_STALLED], 1);
		*stalled = 1;
		*since = clock_mono_ns();
	}
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

/* Discards the instance's region for `why`, unless live stages hold it.
 * Returns 0, or MI_EXIT_STARTUP with the refusal logged. */
static int discard_region(const struct settings *s, const char *why)
{
	char holders[SHM_ERR_LEN];
	int r = shm_discard(s->instance, holders);
	if (r == -EBUSY) {
		log_error("%s, and live processes hold it (%s): instance '%s' is in use; stop that pipeline "
			  "first, or give this one another [instance] name (INGEST_INSTANCE_NAME)",
			  why, holders, s->instance);
		return MI_EXIT_STARTUP;
	}
	if (r < 0) {
		log_error("%s", holders);
		return MI_EXIT_STARTUP;
	}
	log_warn("%s; no live stage holds it, so it is discarded and made anew (nothing acknowledged is "
		 "lost: the log holds it)", why);
	return 0;
}

/* Opens (or creates) the instance's region for this data directory: a
 * region of another layout, geometry or data directory that no live stage
 * holds is replaced; one that a live flusherd serves is refused. */
static int claim_region(const struct settings *s, const struct shm_geom *g, shm_region_t *reg)
{
	char err[SHM_ERR_LEN], name[96];
	shm_region_name(s->instance, name, sizeof(name));
	for (int tries = 0; tries < 5; tries++) {
		int r = shm_open_region(s->instance, g, 1, reg, err);
		if (r == -ESTALE) {
			if (discard_region(s, err))
				return MI_EXIT_STARTUP;
			continue;
		}
		if (r < 0) {
			log_error("%s", err);
			return MI_EXIT_STARTUP;
		}
		struct shm_ctl *ctl = reg->ctl;
		if (reg->created) {
			log_info("shm %s: created for %u ring(s) of %llu bytes and %u devices%s", name, g->nrings,
				 (unsigned long long)g->ring_bytes, g->ndevices,
				 tries ? "" : " (there was none: a clean stop or a reboot removes it)");
			return 0;
		}
		if (shm_stage_alive(ctl, STAGE_FLUSHERD) &&
		    shm_load_acquire(&ctl->stage[STAGE_FLUSHERD].pid) != getpid()) {
			char who[SHM_ERR_LEN];
			shm_live_holders(ctl, who, sizeof(who));
			log_error("shm %s: instance '%s' is in use by another pipeline (%s, serving data dir %s); "
				  "stop it first, or give this one another [instance] name (INGEST_INSTANCE_NAME)",
				  name, s->instance, who, ctl->data_dir);
			shm_close_region(reg);
			return MI_EXIT_STARTUP;
		}
		struct stat st;
		if (shm_load_acquire(&ctl->ready) && stat(s->data_dir, &st) == 0 &&
		    ((uint64_t)st.st_dev != ctl->data_dev || (uint64_t)st.st_ino != ctl->data_ino)) {
			char why[SHM_ERR_LEN + 64];
			snprintf(why, sizeof(why), "shm %s: it was made for data dir %.*s, not %s", name,
				 (int)sizeof(ctl->data_dir), ctl->data_dir, s->data_dir);
			shm_close_region(reg);
			if (discard_region(s, why))
				return MI_EXIT_STARTUP;
			continue;
		}
		log_info("shm %s: attached (it survived the last flusherd: ring positions and device seqs "
			 "carry on)", name);
		return 0;
	}
	log_error("shm %s: made anew 5 times and still contended; is another pipeline starting with "
		  "instance '%s'?", name, s->instance);
	return MI_EXIT_STARTUP;
}

static int run(const struct settings *s, struct retirer *rt)
{
	char wal_dir[512], err[SHM_ERR_LEN > RECOVER_ERR_LEN ? SHM_ERR_LEN : RECOVER_ERR_LEN];
	shm_region_t reg = { 0 };
	struct wal wal = { .fd = -1, .dirfd = -1 };
	struct committer c;
	struct recover_result rr;
	int r, lock = -1, ret = 1;

	memset(&c, 0, sizeof(c));
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", s->data_dir);
	if ((r = mkdir_p(s->data_dir)) < 0 || (r = mkdir_p(wal_dir)) < 0) {
		log_error("data dir %s: %s", s->data_dir, strerror(-r));
		return 1;
	}
	lock = take_lock(wal_dir);
	if (lock < 0) {
		log_error("%s/LOCK: %s", wal_dir,
			  lock == -EBUSY ? "another flusherd (or --repair) is using this log" : strerror(-lock));
		return MI_EXIT_STARTUP;
	}
	struct shm_geom g = { .nrings = (uint32_t)s->workers, .ndevices = (uint32_t)s->devices,
			      .ring_bytes = s->ring_bytes };
	uint64_t t0 = clock_mono_ns();
	uint32_t max_rec = rec_size(MI_DEVID_MAX, (uint32_t)s->max_frame);
	ret = MI_EXIT_STARTUP;
	for (int tries = 0;; tries++) {
		if (claim_region(s, &g, &reg))
			goto out;
		shm_clear_ready(reg.ctl);
		shm_stage_start(reg.ctl, STAGE_FLUSHERD);
		r = recover_run(s->data_dir, reg.ctl, &rr, err);
		if (r != -EXDEV || tries == 2)
			break;
		char why[SHM_ERR_LEN + RECOVER_ERR_LEN];
		snprintf(why, sizeof(why), "shm %s: %s", reg.name, err);
		shm_stage_stop(reg.ctl, STAGE_FLUSHERD);
		shm_close_region(&reg);
		if (discard_region(s, why))
			goto out;
	}
	if (r < 0) {
		log_error("recovery: %s", err);
		goto out;
	}
	ret = 1;
	struct shm_ctl *ctl = reg.ctl;
	if (rr.new_log)
		wal_make_spare(wal_dir, s->segment_bytes);   /* so the first segment is preallocated too */
	r = wal_open(&wal, wal_dir, rr.log_id, s->segment_bytes, rr.seg_first, rr.end_lsn, rr.new_log);
	if (r < 0) {
		log_error("%s: open segment at LSN %llu: %s", wal_dir, (unsigned long long)rr.seg_first,
			  strerror(-r));
		goto out;
	}
	if ((r = commit_init(&c, ctl, &wal, rr.pos, s->commit_bytes, (uint64_t)s->commit_us, max_rec)) < 0) {
		log_error("commit: %s", strerror(-r));
		goto out;
	}
	uint64_t *ctr = shm_ctr(ctl, STAGE_FLUSHERD);
	uint64_t rec_ns = clock_mono_ns() - t0;
	shm_count(&ctr[FC_RECOVERED_RECORDS], rr.records);
	shm_count(&ctr[FC_RECOVERY_CUT_BYTES], rr.cut_bytes);
	shm_store_relaxed(&ctr[FC_RECOVERY_NS], rec_ns);
	shm_store_relaxed(&ctr[FC_DURABLE_LSN], rr.end_lsn);
	shm_store_release(&ctl->durable_lsn, rr.end_lsn);
	if (rr.damaged_seg[0])
		log_warn("%s/%s: damaged record at offset %llu, skipped (with the rest of that segment) while "
			 "rebuilding device seqs; their seqs may be low; run flusherd --replay",
			 wal_dir, rr.damaged_seg, (unsigned long long)rr.damaged_off);
	struct checkpointer k = { .s = s, .ctl = ctl, .log_id = rr.log_id, .rt = rt };
	rt->ctr = ctr;
	checkpoint(&k);
	if ((r = pthread_create(&k.th, NULL, checkpoint_main, &k)) != 0) {
		log_error("checkpoint thread: %s", strerror(r));
		goto out;
	}
	if ((r = shm_set_ready(ctl, s->data_dir, rr.log_id)) < 0) {
		log_error("data dir %s: %s", s->data_dir, strerror(-r));
		goto out_ckpt;
	}
	futex_seq_signal(&ctl->durable);
	log_info("recovered %s in %.1f ms: log ends at LSN %llu, %llu records after the checkpoint, "
		 "%llu bytes cut from the tail, %s%u devices; rings resume at %llu",
		 wal_dir, (double)rec_ns / 1e6, (unsigned long long)rr.end_lsn, (unsigned long long)rr.records,
		 (unsigned long long)rr.cut_bytes, rr.devices_loaded ? "loaded " : "", devtab_count(ctl),
		 (unsigned long long)rr.pos[0]);

	int stalled = 0;
	uint64_t stall_since = 0, last_hb = 0, stop_deadline = 0;
	for (;;) {
		uint64_t now = clock_mono_ns();
		if (now - last_hb > 100 * 1000 * 1000ull) {
			shm_stage_heartbeat(ctl, STAGE_FLUSHERD);
			last_hb = now;
		}
		if (stop_requested && !stop_deadline)
			stop_deadline = now + 5ull * 1000 * 1000 * 1000;
		int64_t n = commit_step(&c);
		if (n == -EBADMSG) {
			log_error("ring: impossible record at a ring position (producer bug or stray write); "
				  "stopping without consuming it");
			goto out_ckpt;
		}
		if (n < 0) {
			/* what was written before the failure is still owed its sync
			 * (and its ACKs); the first failure is the one to name */
			const char *op = c.fail_op;
			char path[sizeof(wal.fail_path)];
			memcpy(path, wal.fail_path, sizeof(path));
			if (commit_sync(&c) < 0) { /* stalls below, retried */ }
			stall(ctl, (int)n, op, path, &stalled, &stall_since);
			if (stop_requested && clock_mono_ns() > stop_deadline)
				break;
			continue;
		}
		if (n == 0 || commit_due(&c, clock_mono_ns())) {
			r = commit_sync(&c);
			if (r < 0) {
				stall(ctl, r, c.fail_op, wal.fail_path, &stalled, &stall_since);
				if (stop_requested && clock_mono_ns() > stop_deadline)
					break;
				continue;
			}
			if (stalled) {
				log_info("%s: writing again after %.1f s stalled", wal.seg_path,
					 (double)(clock_mono_ns() - stall_since) / 1e9);
				stalled = 0;
			}
		}
		now = clock_mono_ns();
		if (n == 0) {
			if (stop_requested && (!commit_pending(&c) || now > stop_deadline))
				break;
			idle_wait(ctl, &c);
		}
	}
	if (stalled)
		log_warn("stopping while stalled: records written since the last successful sync were not "
			 "acknowledged and stay in the rings (the next flusherd writes them)");
	else if (commit_pending(&c))
		log_warn("stopping with records still in the rings (the next flusherd writes them)");
	ret = 0;
out_ckpt:
	__atomic_store_n(&k.stop, 1, __ATOMIC_RELEASE);
	pthread_join(k.th, NULL);
	if (ret == 0) {
		checkpoint(&k);
		log_info("stopped: log durable up to LSN %llu", (unsigned long long)wal.synced_lsn);
	}
out:
	if (reg.ctl) {
		shm_clear_ready(reg.ctl);
		shm_stage_stop(reg.ctl, STAGE_FLUSHERD);
	}
	commit_free(&c);
	wal_close(&wal);
	if (ret == 0 && shm_release(&reg, err) >= 0 && err[0])
		log_info("%s", err);
	shm_close_region(&reg);
	if (lock >= 0)
		close(lock);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "replay", no_argument, NULL, 'R' },
		{ "dump", no_argument, NULL, 'D' },         { "repair", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	int replay = 0, dump = 0, repair = 0, o, r;
	while ((o = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'R': replay = 1; break;
		case 'D': dump = 1; break;
		case 'P': repair = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("flusherd", o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	if (optind < argc || ((dump || repair) && !replay)) {
		usage(stderr);
		return 2;
	}
	struct settings s;
	cfg_t *cfg = NULL;
	char err[CFG_ERR_LEN];
	if (settings_load(config, &s, &cfg, 1, err) < 0) {
		fprintf(stderr, "flusherd: %s\n", err);
		log_status("%s", err);
		return 2;
	}
	if (replay) {
		cfg_close(cfg);
		return replay_run(&s, dump, repair);
	}
	/* the sink instances' lag keys: a bad one stops start-up here, as in sinkd */
	struct retirer rt;
	r = retire_init(&rt, &s, cfg, NULL, err);
	cfg_close(cfg);
	if (r < 0) {
		fprintf(stderr, "flusherd: %s\n", err);
		log_status("%s", err);
		return 2;
	}
	fault_init();
	r = log_open("flusherd", s.log_file, (enum log_level)log_level_parse(s.log_level));
	if (r < 0) {
		fprintf(stderr, "flusherd: log file %s: %s\n", s.log_file, strerror(-r));
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	r = run(&s, &rt);
	retire_free(&rt);
	return r;
}
