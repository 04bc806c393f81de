/* instance — the configured sink instances: [sinkd] sinks names them, each
 * has a section [sink.NAME] with its type (a built-in sink, or a shared
 * object *.so loaded with dlopen), its topics, its batching, commit and
 * retry settings, then the type's own keys.
 *
 *   [sinkd]
 *   sinks = archive, hot
 *   [sink.archive]
 *   type = disk              ; default: the instance's name
 *   topics = telemetry, 7    ; [topics] names or ids; default: every topic
 *   lag_cap_bytes = 1G       ; with lag_policy = skip: how far behind it may fall
 *   dir = /srv/archive       ; the disk sink's own key
 *
 * An instance's place in the list is its slot in shared memory.
 */
#ifndef MI_INSTANCE_H
#define MI_INSTANCE_H
#include <stdint.h>

#include "common/config.h"
#include "common/settings.h"
#include "common/sinkcfg.h"
#include "sinkd/runner.h"
#include "sinkd/sink.h"

#define INSTANCE_NAME_MAX 31

struct sink_inst {
	char name[INSTANCE_NAME_MAX + 1];
	char section[INSTANCE_NAME_MAX + 8];   /* "sink.NAME" */
	char type[256];
	unsigned slot;
	int own_process;                       /* process = own: run by sinkd --only NAME */
	const struct sink_desc *d;             /* NULL: load_err says why it cannot run */
	void *dl;                              /* dlopen handle of a .so type */
	void *cfg;                             /* the type's keys, d->cfg_size bytes */
	struct cfg_opt *opts;                  /* the type's rows, in this section */
	uint8_t *topics;                       /* runner filter; NULL: every topic */
	uint64_t lag_cap_bytes;                /* common/sinkcfg.h */
	enum lag_policy lag_policy;
	struct runner_params p;
	char load_err[CFG_ERR_LEN];
};

/* Reads every instance; SHM_MAX_SINKS at most.  A bad key, value, type
 * name or topic, or the old [sink_disk] form, is -EINVAL with err naming
 * it.  A .so that cannot be loaded (missing file or symbol, another ABI
 * version) is no config error: that instance gets load_err and d == NULL,
 * its section's keys are left unchecked, and the others run.
 * Returns the count, or -errno. */
int instances_load(cfg_t *cfg, const struct settings *s, struct sink_inst *insts, char err[CFG_ERR_LEN]);
void instances_free(struct sink_inst *insts, unsigned n);

/* The type's keys as config rows of `section` (d->nopts of them). */
int instance_rows(const struct sink_desc *d, const char *section, struct cfg_opt *rows, char err[CFG_ERR_LEN]);

/* The env an instance's init() gets: its name, the data dir, its batch
 * limits, where delivery starts, the log's id (flags: SINK_ENV_*,
 * backfill_* for a backfill), and the host's log, topic-name and reload
 * calls. */
void instance_env(struct sink_env *env, const struct sink_inst *in, const struct settings *s, uint64_t start_lsn,
		  uint64_t log_id, uint32_t flags);

/* A reload was asked for (SIGHUP): sink_env.reloads() grows.  Safe in a
 * signal handler. */
void instance_note_reload(void);

/* Built-in sink types, NULL-terminated. */
extern const struct sink_desc *const sink_builtins[];
#endif
