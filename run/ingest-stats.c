/* ingest-stats — every stage's counters from the shared-memory region,
 * without asking any server: works while stages are down or restarting. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf/loader.h"
#include "common/cli.h"
#include "common/clock.h"
#include "common/settings.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/ring.h"
#include "shm/shm.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ingest-stats [-c FILE] [-i INSTANCE] [--json] [--devices]\n"
		"\n"
		"Prints the counters of every module-ingest stage from shared memory\n"
		"(/dev/shm/module-ingest.<instance>): stage pid, liveness, restarts,\n"
		"counters, ring fill, durable LSN and sink offsets.\n"
		"\n"
		"  -c, --config FILE      read the instance name from this config\n"
		"  -i, --instance NAME    instance name (default: from the config, else 'default')\n"
		"      --json             one JSON object instead of a table\n"
		"      --devices          also list each device's last accepted/durable seq\n"
		"  -h, --help             this text\n"
		"Exit status: 0, 1 when the region does not exist, 2 for a bad command line\n"
		"or config.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "instance", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },         { "devices", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *instance = NULL;
	int json = 0, devices = 0, o;
	while ((o = getopt_long(argc, argv, ":c:i:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'i': instance = optarg; break;
		case 'j': json = 1; break;
		case 'd': devices = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("ingest-stats", o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	struct settings s;
	cfg_t *cfg = NULL;
	char err[CFG_ERR_LEN];
	if (settings_load(config, &s, &cfg, 0, err) < 0) {
		fprintf(stderr, "ingest-stats: %s\n", err);
		return 2;
	}
	cfg_close(cfg);
	if (!instance)
		instance = s.instance;
	shm_region_t reg;
	char serr[SHM_ERR_LEN];
	if (shm_attach_ro(instance, &reg, serr) < 0) {
		fprintf(stderr, "ingest-stats: %s\n", serr);
		return 1;
	}
	struct shm_ctl *ctl = reg.ctl;
	uint64_t now = clock_real_ns();
	uint64_t durable = shm_load_acquire(&ctl->durable_lsn);
	/* served: a live flusherd has recovered the log into the region */
	unsigned ready = shm_pid_alive(shm_load_acquire(&ctl->ready_pid), ctl->ready_start);
	if (json) {
		printf("{\"instance\":\"%s\",\"shm_id\":\"%016llx\",\"log_id\":\"%016llx\",\"ready\":%u,"
		       "\"durable_lsn\":%llu,\"stages\":{", instance, (unsigned long long)ctl->shm_id,
		       (unsigned long long)shm_load_acquire(&ctl->log_id), ready, (unsigned long long)durable);
	} else {
		printf("instance %s  shm %s  log %016llx  durable LSN %llu  %s\n", instance, reg.name,
		       (unsigned long long)shm_load_acquire(&ctl->log_id), (unsigned long long)durable,
		       ready ? "ready" : "recovering");
	}
	for (int st = 0; st < STAGE_MAX; st++) {
		struct shm_stage *sg = &ctl->stage[st];
		int32_t pid = shm_load_acquire(&sg->pid);
		int up = shm_stage_alive(ctl, (enum shm_stage_id)st);
		double hb = sg->heartbeat_ns ? (double)(now - sg->heartbeat_ns) / 1e9 : -1;
		if (json) {
			printf("%s\"%s\":{\"pid\":%d,\"up\":%s,\"restarts\":%u,\"heartbeat_age_s\":%.3f,\"counters\":{",
			       st ? "," : "", shm_stage_name(st), pid, up ? "true" : "false", sg->restarts, hb);
		} else {
			printf("\n%-9s pid %-7d %-5s restarts %-4u heartbeat %.1fs ago\n", shm_stage_name(st), pid,
			       up ? "up" : "DOWN", sg->restarts, hb);
		}
		const char *name;
		for (unsigned i = 0; (name = shm_counter_name(st, i)); i++) {
			uint64_t v = shm_load_relaxed(&sg->ctr[i]);
			if (json)
				printf("%s\"%s\":%llu", i ? "," : "", name, (unsigned long long)v);
			else
				printf("  %-24s %llu\n", name, (unsigned long long)v);
		}
		if (json)
			printf("}}");
	}
	if (json)
		printf("},\"rings\":[");
	else
		printf("\nrings\n");
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		struct ring_hdr *h = shm_ring_hdr(ctl, i);
		uint64_t head = shm_load_acquire(&h->head), tail = shm_load_acquire(&h->tail),
			 rel = shm_load_acquire(&h->released);
		if (json)
			printf("%s{\"head\":%llu,\"tail\":%llu,\"released\":%llu,\"cap\":%llu}", i ? "," : "",
			       (unsigned long long)head, (unsigned long long)tail, (unsigned long long)rel,
			       (unsigned long long)h->cap);
		else
			printf("  ring %u: %llu bytes unwritten, %llu unsynced, %.1f%% full\n", i,
			       (unsigned long long)(head - tail), (unsigned long long)(tail - rel),
			       100.0 * (double)(head - rel) / (double)h->cap);
	}
	if (json)
		printf("],\"sinks\":[");
	else
		printf("\nsinks\n");
	for (int i = 0, n = 0; i < SHM_MAX_SINKS; i++) {
		struct shm_sink *sk = &ctl->sink[i];
		if (!sk->name[0])
			continue;
		uint64_t c = shm_load_relaxed(&sk->committed_lsn), cur = shm_load_relaxed(&sk->cursor_lsn);
		uint64_t oldest = shm_load_relaxed(&sk->oldest_ns);
		double age = oldest && now > oldest ? (double)(now - oldest) / 1e9 : 0;
		uint64_t lag = durable > cur ? durable - cur : 0;
		int up = shm_pid_alive(shm_load_acquire(&sk->pid), shm_load_relaxed(&sk->pid_start));
		/* a stopped process leaves its last state: say what runs now */
		const char *st = up ? shm_sink_state_name(shm_load_acquire(&sk->state)) :
				      sk->state == SINK_ST_STOPPED ? "stopped" : "off";
		char errbuf[sizeof(sk->last_error) + 1];
		snprintf(errbuf, sizeof(errbuf), "%.*s", (int)sizeof(sk->last_error), sk->last_error);
		if (json) {
			json_t *e = json_string(errbuf);
			char *es = e ? json_dumps(e, JSON_ENCODE_ANY) : NULL;
			printf("%s{\"name\":\"%.32s\",\"type\":\"%.32s\",\"state\":\"%s\",\"pid\":%d,"
			       "\"committed_lsn\":%llu,\"delivered_lsn\":%llu,\"lag_bytes\":%llu,\"lag_age_s\":%.3f,"
			       "\"lag_records\":%llu,\"lag_records_exact\":%s,"
			       "\"records\":%llu,\"bytes\":%llu,\"retries\":%llu,\"failures\":%llu,"
			       "\"skipped_records\":%llu,\"skipped_bytes\":%llu,\"last_error\":%s}",
			       n++ ? "," : "", sk->name, sk->type, st, up ? sk->pid : 0, (unsigned long long)c,
			       (unsigned long long)cur, (unsigned long long)lag, age,
			       (unsigned long long)shm_load_relaxed(&sk->lag_records),
			       shm_load_relaxed(&sk->lag_exact) ? "true" : "false", (unsigned long long)sk->records,
			       (unsigned long long)sk->bytes, (unsigned long long)sk->retries,
			       (unsigned long long)sk->failures, (unsigned long long)shm_load_relaxed(&sk->skipped_records),
			       (unsigned long long)shm_load_relaxed(&sk->skipped_bytes), es ? es : "\"\"");
			free(es);
			json_decref(e);
		} else {
			char skipbuf[96] = "";
			if (shm_load_relaxed(&sk->skipped_bytes))
				snprintf(skipbuf, sizeof(skipbuf), ", skipped %llu records %llu bytes (retired undelivered)",
					 (unsigned long long)shm_load_relaxed(&sk->skipped_records),
					 (unsigned long long)shm_load_relaxed(&sk->skipped_bytes));
			printf("  %-12s %-6s %-9s committed LSN %llu, lag %s%llu records %llu bytes (%.1f s), delivered "
			       "%llu records %llu bytes, %llu retries, %llu failures%s%s%s\n",
			       sk->name, sk->type, st, (unsigned long long)c, shm_load_relaxed(&sk->lag_exact) ? "" : ">= ",
			       (unsigned long long)shm_load_relaxed(&sk->lag_records), (unsigned long long)lag, age,
			       (unsigned long long)sk->records, (unsigned long long)sk->bytes,
			       (unsigned long long)sk->retries, (unsigned long long)sk->failures, skipbuf,
			       errbuf[0] ? "; last error: " : "", errbuf);
		}
	}
	if (json)
		printf("]");
	/* the one drop table: kernel filters and user space, by reason */
	struct drop_totals dt[DROP_REASON_MAX];
	char derr[256];
	int have_drops = bpfl_read_pinned(instance, dt, derr, sizeof(derr)) == 0;
	static const char *const modes[] = { "user space only", "classic BPF", "eBPF" };
	uint64_t fm = shm_load_relaxed(&ctl->stage[STAGE_INGESTD].ctr[IC_FILTER_MODE]);
	if (json) {
		printf(",\"filter_mode\":\"%s\",\"drops\":", fm < 3 ? modes[fm] : "?");
		if (have_drops) {
			printf("{");
			for (int r = 0; r < DROP_REASON_MAX; r++)
				printf("%s\"%s\":{\"packets\":%llu,\"bytes\":%llu}", r ? "," : "", bpfl_reason_name(r),
				       (unsigned long long)dt[r].packets, (unsigned long long)dt[r].bytes);
			printf("}");
		} else {
			printf("null");
		}
	} else {
		printf("\ndrops (filter: %s)\n", fm < 3 ? modes[fm] : "?");
		if (!have_drops)
			printf("  no drop table: %s\n", derr);
		for (int r = 0; have_drops && r < DROP_REASON_MAX; r++)
			printf("  %-24s %llu packets, %llu bytes\n", bpfl_reason_name(r), (unsigned long long)dt[r].packets,
			       (unsigned long long)dt[r].bytes);
	}
	if (devices) {
		if (json)
			printf(",\"devices\":[");
		else
			printf("\ndevices\n");
		for (uint32_t i = 0, n = 0; i < ctl->ndevices; i++) {
			struct shm_dev *d = shm_dev(ctl, i);
			if (shm_load_acquire(&d->state) != DEV_READY)
				continue;
			if (json)
				printf("%s{\"id\":\"%.*s\",\"last_accepted\":%llu,\"last_durable\":%llu}", n++ ? "," : "",
				       d->id_len, d->id, (unsigned long long)d->last_accepted,
				       (unsigned long long)d->last_durable);
			else
				printf("  %-32.*s accepted %llu durable %llu\n", d->id_len, d->id,
				       (unsigned long long)d->last_accepted, (unsigned long long)d->last_durable);
		}
		if (json)
			printf("]");
	}
	if (json)
		printf("}\n");
	shm_close_region(&reg);
	return 0;
}
