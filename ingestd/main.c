/* ingestd — network and parsing: TCP in, records into the shm ring, ACKs out
 * once flusherd says the records are durable.  Never touches the disk. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/cli.h"
#include "common/fault.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/settings.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

volatile int ingestd_stop, ingestd_reload;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		ingestd_reload = 1;
	else
		ingestd_stop = 1;
}

static void log_waiting(const char *why)
{
	log_info("%s before listening", why);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ingestd [-c FILE]\n"
		"\n"
		"The network stage of module-ingest: accepts device connections (wire\n"
		"protocol v1, docs/PROTOCOL.md), validates frames, puts accepted records into\n"
		"the shared-memory ring and acknowledges them once flusherd made them durable.\n"
		"Normally run by run/supervise.  SIGTERM stops it gracefully.\n"
		"\n"
		"  -c, --config FILE  config file (default: built-in defaults)\n"
		"  -h, --help         this text\n"
		"\n"
		"Config keys (INGEST_<SECTION>_<KEY> overrides any of them):\n");
	cfg_print_help(f, settings_opts, settings_nopts);
}

/* A previous ingestd may have died after putting records in the ring but
 * before its seq bookkeeping, or the other way round.  The ring and the
 * durable seqs are the truth: last_accepted = the highest seq either holds. */
static void reconcile(struct shm_ctl *ctl, uint32_t ring_id)
{
	struct ring_hdr *h = shm_ring_hdr(ctl, ring_id);
	uint64_t head = shm_load_acquire(&h->head);
	struct ring_cons rc;
	ring_cons_attach(&rc, h, shm_load_acquire(&h->released));
	for (uint32_t i = 0; i < ctl->ndevices; i++) {
		struct shm_dev *d = shm_dev(ctl, i);
		if (shm_load_acquire(&d->state) == DEV_READY)
			shm_store_release(&d->last_accepted, shm_load_acquire(&d->last_durable));
	}
	const struct rec_hdr *r;
	int err;
	while ((r = ring_cons_peek(&rc, head, &err))) {
		if (r->type == REC_DATA && r->slot < ctl->ndevices) {
			struct shm_dev *d = shm_dev(ctl, r->slot);
			if (r->seq > d->last_accepted)
				shm_store_release(&d->last_accepted, r->seq);
		}
		ring_cons_advance(&rc, rec_total(r));
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	int o;
	while ((o = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("ingestd", o, argv);
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
	if (settings_load(config, &s, &cfg, 1, err) < 0) {
		fprintf(stderr, "ingestd: %s\n", err);
		log_status("%s", err);
		return 2;
	}
	cfg_close(cfg);
	keys_t *keys = NULL;
	if (!strcmp(s.auth_mode, "keys")) {
		char kerr[512];
		if (sodium_init() < 0) {
			fprintf(stderr, "ingestd: libsodium cannot initialise\n");
			return 2;
		}
		if (auth_load(&s, &keys, kerr, sizeof(kerr)) < 0) {
			fprintf(stderr, "ingestd: [auth] keys_file: %s\n", kerr);
			log_status("[auth] keys_file: %s", kerr);
			return 2;
		}
	}
	int r = log_open("ingestd", s.log_file, (enum log_level)log_level_parse(s.log_level));
	if (r < 0) {
		fprintf(stderr, "ingestd: log file %s: %s\n", s.log_file, strerror(-r));
		return 2;
	}
	fault_init();
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	shm_region_t reg;
	struct shm_geom g = { .nrings = (uint32_t)s.workers, .ndevices = (uint32_t)s.devices, .ring_bytes = s.ring_bytes };
	r = shm_attach_stage(s.instance, &g, s.data_dir, &ingestd_stop, log_waiting, &reg, err);
	if (r == -EINTR) {
		keys_free(keys);
		return 0;
	}
	if (r < 0) {
		log_error("%s", err);
		keys_free(keys);
		return MI_EXIT_STARTUP;
	}
	struct shm_ctl *ctl = reg.ctl;
	shm_stage_start(ctl, STAGE_INGESTD);
	reconcile(ctl, 0);
	struct worker w;
	memset(&w, 0, sizeof(w));
	w.s = &s;
	w.keys = keys;
	w.keys_mode = keys != NULL;
	if (keys)
		log_info("auth mode keys: %zu devices in %s", keys_count(keys), s.keys_file);
	w.ctl = ctl;
	w.ctr = shm_ctr(ctl, STAGE_INGESTD);
	w.ring_id = 0;
	r = worker_run(&w);
	shm_stage_stop(ctl, STAGE_INGESTD);
	if (r == 0 && shm_release(&reg, err) >= 0 && err[0])
		log_info("%s", err);
	shm_close_region(&reg);
	keys_free(w.keys);   /* a reload may have replaced it */
	return r;
}
