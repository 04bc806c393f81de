#include "sinkd/instance.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/sinkcfg.h"
#include "shm/shm.h"

extern const struct sink_desc sink_disk, sink_index, sink_cloud, sink_nats;

const struct sink_desc *const sink_builtins[] = {
	&sink_disk,
	&sink_index,
	&sink_cloud,
	&sink_nats,
	NULL,
};

/* The keys every instance has, before its type's own. */
struct common_keys {
	char type[256];
	char process[16];
	int64_t batch_records;
	uint64_t batch_bytes;
	int64_t batch_ms, commit_ms, retry_min_ms, retry_max_ms;
};

#define K(f) offsetof(struct common_keys, f)
#define KS(f) sizeof(((struct common_keys *)0)->f)
/* section filled in per instance; the two defaults marked come from [sinkd] */
static const struct cfg_opt common_rows[] = {
	{ NULL, "type", CFG_STR, "", K(type), KS(type), 0, 0,
	  "a built-in sink (disk, index, cloud, nats) or the path of a shared object ending in .so; default: the instance name" },
	{ NULL, "process", CFG_STR, "shared", K(process), KS(process), 0, 0,
	  "shared: run in the main sinkd; own: in a process of its own (sinkd --only NAME)" },
	{ NULL, "batch_records", CFG_INT, "1024", K(batch_records), 0, 1, 65536,
	  "a batch is delivered at this many records ..." },
	{ NULL, "batch_bytes", CFG_SIZE, "4M", K(batch_bytes), 0, 1, 1ll << 30,
	  "... or this many payload bytes ..." },
	{ NULL, "batch_ms", CFG_INT, NULL, K(batch_ms), 0, 0, 3600000,
	  "... or this long after its first record was durable (default: [sinkd] batch_ms)" },
	{ NULL, "commit_ms", CFG_INT, NULL, K(commit_ms), 0, 10, 3600000,
	  "how often the instance makes its output durable and records its offset (default: [sinkd] commit_ms)" },
	{ NULL, "retry_min_ms", CFG_INT, "100", K(retry_min_ms), 0, 1, 600000,
	  "first delay after a failed delivery or commit; doubles, with jitter ..." },
	{ NULL, "retry_max_ms", CFG_INT, "30000", K(retry_max_ms), 0, 1, 3600000, "... up to this" },
};
#define NCOMMON (sizeof(common_rows) / sizeof(common_rows[0]))

static const enum cfg_type opt_types[SINK_OPT_MAX] = { CFG_STR, CFG_INT, CFG_SIZE, CFG_BOOL };

static int valid_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > INSTANCE_NAME_MAX)
		return 0;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

static int ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && !strcmp(s + a - b, tail);
}

/* dlopen()s a sink type; trouble goes to load_err, not to the config. */
static void load_so(struct sink_inst *in)
{
	in->dl = dlopen(in->type, RTLD_NOW | RTLD_LOCAL);
	if (!in->dl) {
		snprintf(in->load_err, sizeof(in->load_err), "sink %s: type %s: cannot load: %s", in->name, in->type,
			 dlerror());
		return;
	}
	const struct sink_desc *d = dlsym(in->dl, SINK_PLUGIN_SYMBOL);
	if (!d) {
		snprintf(in->load_err, sizeof(in->load_err), "sink %s: type %s: no symbol %s (a sink exports "
			 "const struct sink_desc " SINK_PLUGIN_SYMBOL ")", in->name, in->type, SINK_PLUGIN_SYMBOL);
		return;
	}
	if (d->abi != SINK_ABI_VERSION) {
		snprintf(in->load_err, sizeof(in->load_err), "sink %s: type %s: built for sink ABI version %u, this "
			 "sinkd speaks version %u; rebuild it against this sinkd/sink.h", in->name, in->type, d->abi,
			 SINK_ABI_VERSION);
		return;
	}
	if (!d->name || !d->init || !d->deliver || !d->commit || !d->exit || (d->nopts && !d->opts)) {
		snprintf(in->load_err, sizeof(in->load_err), "sink %s: type %s: its descriptor lacks a name, "
			 "init, deliver, commit or exit", in->name, in->type);
		return;
	}
	in->d = d;
}

int instance_rows(const struct sink_desc *d, const char *section, struct cfg_opt *rows, char err[CFG_ERR_LEN])
{
	for (size_t i = 0; i < d->nopts; i++) {
		const struct sink_opt *o = &d->opts[i];
		if ((unsigned)o->type >= SINK_OPT_MAX) {
			snprintf(err, CFG_ERR_LEN, "[%s] type %s: key %s has an unknown type %u", section, d->name,
				 o->key, (unsigned)o->type);
			return -EINVAL;
		}
		rows[i] = (struct cfg_opt){ section, o->key, opt_types[o->type], o->def, o->off, o->size, o->min,
					    o->max, o->desc };
	}
	return 0;
}

static const struct sink_desc *builtin(const char *type)
{
	for (const struct sink_desc *const *d = sink_builtins; *d; d++)
		if (!strcmp((*d)->name, type))
			return *d;
	return NULL;
}

static int load_one(cfg_t *cfg, const struct settings *s, struct sink_inst *in, char err[CFG_ERR_LEN])
{
	struct cfg_opt rows[NCOMMON];
	struct common_keys k;
	char def_batch[24], def_commit[24], def_records[24], def_bytes[24];
	const struct sink_desc *bi = NULL;
	int r;
	/* twice when the type is a built-in one with batch defaults of its own:
	 * the type is a key of these rows */
again:
	snprintf(def_batch, sizeof(def_batch), "%lld",
		 (long long)(bi && bi->def_batch_ms ? bi->def_batch_ms : (uint64_t)s->sink_batch_ms));
	snprintf(def_commit, sizeof(def_commit), "%lld", (long long)s->sink_commit_ms);
	snprintf(def_records, sizeof(def_records), "%u", bi && bi->def_batch_records ? bi->def_batch_records : 1024);
	snprintf(def_bytes, sizeof(def_bytes), "%llu",
		 (unsigned long long)(bi && bi->def_batch_bytes ? bi->def_batch_bytes : 4u << 20));
	memcpy(rows, common_rows, sizeof(rows));
	for (size_t i = 0; i < NCOMMON; i++) {
		rows[i].section = in->section;
		if (!strcmp(rows[i].key, "batch_ms"))
			rows[i].def = def_batch;
		else if (!strcmp(rows[i].key, "commit_ms"))
			rows[i].def = def_commit;
		else if (!strcmp(rows[i].key, "batch_records"))
			rows[i].def = def_records;
		else if (!strcmp(rows[i].key, "batch_bytes"))
			rows[i].def = def_bytes;
	}
	memset(&k, 0, sizeof(k));
	if ((r = cfg_apply(cfg, rows, NCOMMON, &k, err)) < 0)
		return r;
	snprintf(in->type, sizeof(in->type), "%s", k.type[0] ? k.type : in->name);
	if (!bi && (bi = builtin(in->type)) && (bi->def_batch_ms || bi->def_batch_records || bi->def_batch_bytes))
		goto again;
	if (!strcmp(k.process, "own"))
		in->own_process = 1;
	else if (strcmp(k.process, "shared")) {
		snprintf(err, CFG_ERR_LEN, "[%s] process = '%s': use shared or own", in->section, k.process);
		return -EINVAL;
	}
	if (k.retry_max_ms < k.retry_min_ms) {
		snprintf(err, CFG_ERR_LEN, "[%s] retry_max_ms = %lld: below retry_min_ms (%lld)", in->section,
			 (long long)k.retry_max_ms, (long long)k.retry_min_ms);
		return -EINVAL;
	}
	in->p = (struct runner_params){
		.batch_records = (uint32_t)k.batch_records, .batch_bytes = k.batch_bytes,
		.batch_ms = (uint64_t)k.batch_ms, .commit_ms = (uint64_t)k.commit_ms,
		.retry_min_ms = (uint32_t)k.retry_min_ms, .retry_max_ms = (uint32_t)k.retry_max_ms,
	};
	/* topics and lag: the keys flusherd's retention reads too */
	struct sinkcfg sc;
	if ((r = sinkcfg_read(cfg, s, in->section, &sc, err)) < 0)
		return r;
	in->topics = sc.topics;
	in->lag_cap_bytes = sc.lag_cap_bytes;
	in->lag_policy = sc.policy;
	if (ends_with(in->type, ".so")) {
		load_so(in);
		if (!in->d) {
			/* its keys are the type's to judge, and it is not here */
			const char **keys, **vals;
			int n = cfg_section_pairs(cfg, in->section, &keys, &vals);
			free(keys);
			free(vals);
			return n < 0 ? n : 0;
		}
	} else {
		in->d = builtin(in->type);
		if (!in->d) {
			int w = snprintf(err, CFG_ERR_LEN, "[%s] type = '%s': no such sink (built in:", in->section,
					 in->type);
			for (const struct sink_desc *const *d = sink_builtins; *d && w > 0 && w < CFG_ERR_LEN; d++)
				w += snprintf(err + w, CFG_ERR_LEN - (size_t)w, " %s", (*d)->name);
			if (w > 0 && w < CFG_ERR_LEN)
				snprintf(err + w, CFG_ERR_LEN - (size_t)w, "; or a path ending in .so)");
			return -EINVAL;
		}
	}
	const struct sink_desc *d = in->d;
	in->cfg = calloc(1, d->cfg_size ? d->cfg_size : 1);
	in->opts = calloc(d->nopts ? d->nopts : 1, sizeof(*in->opts));
	if (!in->cfg || !in->opts)
		return -ENOMEM;
	if ((r = instance_rows(d, in->section, in->opts, err)) < 0)
		return r;
	return cfg_apply(cfg, in->opts, d->nopts, in->cfg, err);
}

int instances_load(cfg_t *cfg, const struct settings *s, struct sink_inst *insts, char err[CFG_ERR_LEN])
{
	const char **secs;
	int nsec = cfg_sections(cfg, &secs);
	for (int i = 0; i < nsec; i++)
		if (!strncasecmp(secs[i], "sink_", 5)) {
			snprintf(err, CFG_ERR_LEN, "[%s]: sinks are named instances now: [sinkd] sinks = NAME, and "
				 "[sink.NAME] with type = %s and that section's keys (docs/OPERATIONS.md, Sinks)",
				 secs[i], secs[i] + 5);
			return -EINVAL;
		}
	unsigned n = 0;
	char list[sizeof(s->sinks)], *save = NULL;
	memcpy(list, s->sinks, sizeof(list));
	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!valid_name(tok)) {
			snprintf(err, CFG_ERR_LEN, "[sinkd] sinks: '%s': an instance name is 1-%d of [a-z0-9_-]", tok,
				 INSTANCE_NAME_MAX);
			goto fail;
		}
		for (unsigned i = 0; i < n; i++)
			if (!strcmp(insts[i].name, tok)) {
				snprintf(err, CFG_ERR_LEN, "[sinkd] sinks: '%s' named twice", tok);
				goto fail;
			}
		if (n == SHM_MAX_SINKS) {
			snprintf(err, CFG_ERR_LEN, "[sinkd] sinks: at most %d instances", SHM_MAX_SINKS);
			goto fail;
		}
		struct sink_inst *in = &insts[n];
		memset(in, 0, sizeof(*in));
		snprintf(in->name, sizeof(in->name), "%s", tok);
		snprintf(in->section, sizeof(in->section), "sink.%s", tok);
		in->slot = n++;
		int r = load_one(cfg, s, in, err);
		if (r < 0) {
			if (r == -ENOMEM)
				snprintf(err, CFG_ERR_LEN, "[%s]: out of memory", in->section);
			goto fail;
		}
	}
	/* a section no instance claims is a typo or a forgotten instance */
	for (int i = 0; i < nsec; i++) {
		if (strncasecmp(secs[i], "sink.", 5))
			continue;
		int known = 0;
		for (unsigned j = 0; j < n; j++)
			known |= !strcasecmp(secs[i], insts[j].section);
		if (!known) {
			snprintf(err, CFG_ERR_LEN, "[%s]: no instance '%s' in [sinkd] sinks", secs[i], secs[i] + 5);
			goto fail;
		}
	}
	return (int)n;
fail:
	instances_free(insts, n);
	return -EINVAL;
}

void instances_free(struct sink_inst *insts, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(insts[i].cfg);
		free(insts[i].opts);
		free(insts[i].topics);
		if (insts[i].dl)
			dlclose(insts[i].dl);
		insts[i].cfg = insts[i].opts = NULL;
		insts[i].topics = NULL;
		insts[i].dl = NULL;
	}
}

static void instance_log(const struct sink_env *env, enum sink_log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	static const enum log_level map[] = { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
	log_msg(map[(unsigned)level <= SINK_LOG_DEBUG ? level : SINK_LOG_DEBUG], "sink %s%s: %s", env->name,
		env->flags & SINK_ENV_BACKFILL ? " (backfill)" : "", buf);
}

static const char *instance_topic_name(const struct sink_env *env, uint16_t topic)
{
	const struct settings *s = env->host;
	for (uint32_t i = 0; i < s->ntopics; i++)
		if (s->topics[i].id == topic)
			return s->topics[i].name;
	return NULL;
}

static uint32_t reload_count;

void instance_note_reload(void)
{
	__atomic_fetch_add(&reload_count, 1, __ATOMIC_RELAXED);
}

static uint32_t instance_reloads(const struct sink_env *env)
{
	(void)env;
	return __atomic_load_n(&reload_count, __ATOMIC_RELAXED);
}

void instance_env(struct sink_env *env, const struct sink_inst *in, const struct settings *s, uint64_t start_lsn,
		  uint64_t log_id, uint32_t flags)
{
	*env = (struct sink_env){
		.abi = SINK_ABI_VERSION, .flags = flags, .start_lsn = start_lsn, .log_id = log_id,
		.batch_records = in->p.batch_records, .batch_bytes = in->p.batch_bytes, .batch_ms = in->p.batch_ms,
		.name = in->name, .data_dir = s->data_dir, .log = instance_log, .topic_name = instance_topic_name,
		.reloads = instance_reloads, .host = (void *)s,
	};
}
