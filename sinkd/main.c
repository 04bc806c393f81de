/* sinkd — the consumers.  Each configured sink instance runs in its own
 * thread with its own cursor and committed offset (sinkd/runner.c), so a
 * slow or failing instance lags and catches up alone while the others go
 * on; `sinkd --only NAME` runs one instance as a process of its own. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/offset.h"
#include "common/settings.h"
#include "shm/atomic.h"
#include "shm/shm.h"
#include "sinkd/backfill.h"
#include "sinkd/instance.h"
#include "sinkd/runner.h"
#include "sinkd/sink.h"

static volatile int stop_requested;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		instance_note_reload();
	else
		stop_requested = 1;
}

struct run {
	struct sink_inst *in;
	struct runner r;
	struct sink_env env;
	void *state;
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
		"usage: sinkd [-c FILE] [--only NAME]\n"
		"       sinkd [-c FILE] --backfill NAME [--from-lsn N | --since TIME]\n"
		"                                       [--to-lsn N | --until TIME]\n"
		"\n"
		"The consumer stage of module-ingest: reads committed records from the WAL\n"
		"segments and delivers them to every sink instance named in [sinkd] sinks,\n"
		"each in its own thread with its own committed offset in\n"
		"<data dir>/sinks/<name>.offset.  Normally run by run/supervise.  SIGTERM\n"
		"commits and stops; SIGHUP has sinks read their own files again (the cloud\n"
		"sink's credentials).\n"
		"\n"
		"  -c, --config FILE  config file (default: built-in defaults)\n"
		"      --only NAME    run only instance NAME (one with process = own, or any\n"
		"                     other for a test); the main sinkd leaves process = own\n"
		"                     instances to their own sinkd --only\n"
		"      --list-own     print the instances with process = own, one a line\n"
		"      --backfill NAME  run instance NAME once over [from, to) of the log and\n"
		"                     exit, printing records, bytes and seconds; its live\n"
		"                     offset is not touched; the pipeline may be running\n"
		"      --from-lsn N, --to-lsn N  the range by LSN (default: the whole log)\n"
		"      --since TIME, --until TIME  by server time: RFC 3339, now, or relative\n"
		"                     (-15m, -2h, -1d); the first record at or after TIME\n"
		"  -h, --help         this text\n"
		"\n"
		"Every instance has a section [sink.NAME] (docs/OPERATIONS.md, Sinks):\n"
		"  type, topics, process, batch_records, batch_bytes, batch_ms, commit_ms,\n"
		"  retry_min_ms, retry_max_ms, then its type's keys.  Built-in types:\n");
	for (const struct sink_desc *const *d = sink_builtins; *d; d++) {
		fprintf(f, "\n  %s: %s\n", (*d)->name, (*d)->description);
		for (size_t i = 0; i < (*d)->nopts; i++) {
			const struct sink_opt *o = &(*d)->opts[i];
			if (strlen(o->key) > 16 || strlen(o->def) > 8)   /* the default under the key */
				fprintf(f, "    %s\n    %-16s %-8s %s\n", o->key, "", o->def, o->desc);
			else
				fprintf(f, "    %-16s %-8s %s\n", o->key, o->def, o->desc);
		}
	}
	fprintf(f, "\nConfig keys (INGEST_<SECTION>_<KEY> overrides any of them; [sink.hot] batch_ms\n"
		   "is INGEST_SINK_HOT_BATCH_MS):\n");
	cfg_print_help(f, settings_opts, settings_nopts);
}

static void *run_main(void *arg)
{
	struct run *u = arg;
	runner_run(&u->r);
	return NULL;
}

/* An instance that cannot run says so where ingest-stats shows it. */
static void publish_stopped(struct shm_sink *pub, const char *msg)
{
	snprintf(pub->last_error, sizeof(pub->last_error), "%s", msg);
	shm_store_relaxed(&pub->failures, pub->failures + 1);
	shm_store_release(&pub->state, (uint32_t)SINK_ST_STOPPED);
}

static int start(struct run *u, const struct settings *s, struct shm_ctl *ctl, const char *wal_dir,
		 const char *sinks_dir)
{
	struct sink_inst *in = u->in;
	struct shm_sink *pub = &ctl->sink[in->slot];
	char err[SINK_ERR_LEN], msg[CFG_ERR_LEN + 64];
	memset(pub, 0, sizeof(*pub));
	snprintf(pub->name, sizeof(pub->name), "%s", in->name);
	snprintf(pub->type, sizeof(pub->type), "%s", in->d ? in->d->name : "?");
	shm_store_relaxed(&pub->pid_start, shm_pid_start(getpid()));
	shm_store_release(&pub->pid, (int32_t)getpid());
	if (!in->d) {
		log_error("%s; this instance does not run (the others do)", in->load_err);
		publish_stopped(pub, in->load_err);
		return -ENOENT;
	}
	void *blob = NULL;
	size_t blob_len = 0;
	uint64_t lsn = 0;
	int r = offset_load(sinks_dir, in->name, &lsn, &blob, &blob_len), fresh = r == -ENOENT;
	if (r < 0 && r != -ENOENT) {
		snprintf(msg, sizeof(msg), "%s/%s.offset: %s", sinks_dir, in->name,
			 r == -EBADMSG ? "damaged" : strerror(-r));
		goto fail;
	}
	uint64_t durable = shm_load_acquire(&ctl->durable_lsn);
	if (lsn > durable) {
		log_warn("sink %s: committed offset %llu is past the end of the log (%llu): the log was cut; "
			 "resuming at its end", in->name, (unsigned long long)lsn, (unsigned long long)durable);
		lsn = durable;
	}
	instance_env(&u->env, in, s, lsn, shm_load_acquire(&ctl->log_id), 0);
	r = in->d->init(&u->state, in->cfg, &u->env, blob, blob_len, err);
	free(blob);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "init: %s", err);
		goto fail;
	}
	shm_store_relaxed(&pub->committed_lsn, lsn);
	u->r = (struct runner){
		.name = in->name, .d = in->d, .state = u->state, .p = in->p, .topics = in->topics, .ctl = ctl,
		.pub = pub, .ctr = shm_ctr(ctl, STAGE_SINKD), .wal_dir = wal_dir, .offset_dir = sinks_dir,
		.segment_bytes = s->segment_bytes, .stop = &stop_requested, .start_lsn = lsn, .fresh = fresh,
		.policy = in->lag_policy, .lag_cap_bytes = in->lag_cap_bytes,
	};
	log_info("sink %s (%s): resuming at LSN %llu", in->name, in->d->name, (unsigned long long)lsn);
	if ((r = pthread_create(&u->th, NULL, run_main, u)) != 0) {
		snprintf(msg, sizeof(msg), "thread: %s", strerror(r));
		in->d->exit(u->state);
		u->state = NULL;
		r = -r;
		goto fail_logged;
	}
	u->started = 1;
	return 0;
fail:
	u->state = NULL;
fail_logged:
	log_error("sink %s: %s; this instance does not run (the others do)", in->name, msg);
	publish_stopped(pub, msg);
	return r < 0 ? r : -EINVAL;
}

int main(int argc, char **argv)
{
	enum { OPT_ONLY = 256, OPT_LIST_OWN, OPT_BACKFILL, OPT_FROM, OPT_TO, OPT_SINCE, OPT_UNTIL };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "only", required_argument, NULL, OPT_ONLY },
		{ "list-own", no_argument, NULL, OPT_LIST_OWN },
		{ "backfill", required_argument, NULL, OPT_BACKFILL },
		{ "from-lsn", required_argument, NULL, OPT_FROM },
		{ "to-lsn", required_argument, NULL, OPT_TO },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *only = NULL, *backfill = NULL;
	struct backfill_args bf = { .stop = &stop_requested };
	int o, list_own = 0, ret = MI_EXIT_STARTUP, have_lsn = 0;
	uint64_t now = clock_real_ns();
	while ((o = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case OPT_ONLY: only = optarg; break;
		case OPT_LIST_OWN: list_own = 1; break;
		case OPT_BACKFILL: backfill = optarg; break;
		case OPT_FROM:
		case OPT_TO: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-') {
				fprintf(stderr, "sinkd: %s '%s': not an LSN (a whole number)\n",
					o == OPT_FROM ? "--from-lsn" : "--to-lsn", optarg);
				return CLI_EX_USAGE;
			}
			*(o == OPT_FROM ? &bf.from_lsn : &bf.to_lsn) = v;
			have_lsn = 1;
			break;
		}
		case OPT_SINCE:
		case OPT_UNTIL:
			if (clock_parse_time(optarg, now, o == OPT_SINCE ? &bf.since_ns : &bf.until_ns) < 0) {
				fprintf(stderr, "sinkd: %s '%s': not a time (RFC 3339 such as 2026-12-03T10:00:00Z, "
					"now, or relative such as -15m, -2h, -1d)\n", o == OPT_SINCE ? "--since" : "--until",
					optarg);
				return CLI_EX_USAGE;
			}
			*(o == OPT_SINCE ? &bf.by_since : &bf.by_until) = 1;
			break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("sinkd", o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return CLI_EX_USAGE;
	}
	if (!backfill && (have_lsn || bf.by_since || bf.by_until)) {
		fprintf(stderr, "sinkd: --from-lsn, --to-lsn, --since and --until go with --backfill NAME\n");
		return CLI_EX_USAGE;
	}
	if ((bf.by_since && bf.from_lsn) || (bf.by_until && bf.to_lsn)) {
		fprintf(stderr, "sinkd: give each end of the range once: --from-lsn or --since, --to-lsn or --until\n");
		return CLI_EX_USAGE;
	}
	if (backfill)
		only = backfill;
	struct settings s;
	cfg_t *cfg = NULL;
	char err[CFG_ERR_LEN > SHM_ERR_LEN ? CFG_ERR_LEN : SHM_ERR_LEN];
	struct sink_inst insts[SHM_MAX_SINKS];
	struct run runs[SHM_MAX_SINKS];
	int n = 0;
	memset(runs, 0, sizeof(runs));
	if (settings_load(config, &s, &cfg, 0, err) < 0 || (n = instances_load(cfg, &s, insts, err)) < 0 ||
	    cfg_check_unused(cfg, NULL, err) < 0) {
		fprintf(stderr, "sinkd: %s\n", err);
		log_status("%s", err);
		n = n < 0 ? 0 : n;
		goto out;
	}
	if (list_own) {
		for (int i = 0; i < n; i++)
			if (insts[i].own_process)
				printf("%s\n", insts[i].name);
		ret = 0;
		goto out;
	}
	int found = !only;
	for (int i = 0; i < n && only; i++)
		found |= !strcmp(insts[i].name, only);
	if (!found) {
		const char *flag = backfill ? "--backfill" : "--only";
		fprintf(stderr, "sinkd: %s %s: no such instance in [sinkd] sinks (%s)\n", flag, only, s.sinks);
		log_status("%s %s: no such instance in [sinkd] sinks (%s)", flag, only, s.sinks);
		goto out;
	}
	/* a backfill is a command: its log lines go to stderr, the summary to stdout */
	const char *log_file = backfill ? "/dev/stderr" : s.log_file;
	if (log_open("sinkd", log_file, (enum log_level)log_level_parse(backfill ? "warn" : s.log_level)) < 0) {
		fprintf(stderr, "sinkd: log file %s: %s\n", log_file, strerror(errno));
		goto out;
	}
	fault_init();
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (backfill) {
		for (int i = 0; i < n; i++)
			if (!strcmp(insts[i].name, backfill)) {
				bf.progress = isatty(2);
				ret = backfill_run(&s, &insts[i], &bf, err);
				if (ret)
					fprintf(stderr, "sinkd: --backfill %s: %s\n", backfill, err);
			}
		goto out;
	}

	shm_region_t reg = { .fd = -1 };
	struct shm_geom g = { .nrings = (uint32_t)s.workers, .ndevices = (uint32_t)s.devices, .ring_bytes = s.ring_bytes };
	int r = shm_attach_stage(s.instance, &g, s.data_dir, &stop_requested, log_waiting, &reg, err);
	if (r == -EINTR) {
		ret = 0;
		goto out;
	}
	if (r < 0) {
		log_error("%s", err);
		goto out;
	}
	struct shm_ctl *ctl = reg.ctl;
	ret = 1;
	/* the main sinkd is the stage; one run with --only lives in its slot */
	if (!only) {
		shm_stage_start(ctl, STAGE_SINKD);
		for (int i = n; i < SHM_MAX_SINKS; i++)
			shm_store_relaxed(&ctl->sink[i].name[0], 0);   /* instances no longer configured */
	}
	char sinks_dir[512], wal_dir[512];
	snprintf(sinks_dir, sizeof(sinks_dir), "%s/sinks", s.data_dir);
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", s.data_dir);
	if (mkdir(sinks_dir, 0700) < 0 && errno != EEXIST) {
		log_error("%s: %s", sinks_dir, strerror(errno));
		goto out_shm;
	}
	int running = 0;
	for (int i = 0; i < n && !stop_requested; i++) {
		if (only ? strcmp(insts[i].name, only) != 0 : insts[i].own_process)
			continue;
		runs[i].in = &insts[i];
		if (start(&runs[i], &s, ctl, wal_dir, sinks_dir) == 0)
			running++;
	}
	if (!only && n)
		log_info("%d of %d sink instance(s) running here", running, n);
	while (!stop_requested) {
		if (!only)
			shm_stage_heartbeat(ctl, STAGE_SINKD);
		struct timespec ts = { 0, 500 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < n; i++) {
		if (runs[i].started)
			pthread_join(runs[i].th, NULL);
		if (runs[i].state)
			runs[i].in->d->exit(runs[i].state);
		if (runs[i].in)
			shm_store_release(&ctl->sink[insts[i].slot].pid, 0);
	}
	ret = 0;
	log_info("stopped");
out_shm:
	if (!only)
		shm_stage_stop(ctl, STAGE_SINKD);
	if (ret == 0 && shm_release(&reg, err) >= 0 && err[0])
		log_info("%s", err);
	shm_close_region(&reg);
out:
	instances_free(insts, (unsigned)n);
	cfg_close(cfg);
	return ret;
}
