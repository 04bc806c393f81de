#include "sinkd/index_retain.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETAIN_BATCH 5000
#define STR_(x) #x
#define STR(x) STR_(x)
#define RETAIN_EVERY_MS 1000

struct index_retainer {
	sqlite3 *db;
	char path[512];
	int64_t retain_ms;
	const struct sink_env *env;
	sqlite3_stmt *del_rec;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, warned;
};

static int64_t real_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* One pass, in batches: each delete its own transaction. */
static int pass(struct index_retainer *r)
{
	int64_t cutoff = (real_ms() - r->retain_ms) * 1000000;
	int rc;
	do {
		sqlite3_bind_int64(r->del_rec, 1, cutoff);
		rc = sqlite3_step(r->del_rec);
		sqlite3_reset(r->del_rec);
		if (rc == SQLITE_DONE && sqlite3_changes(r->db) == RETAIN_BATCH) {
			/* a backlog: let the instance's writer have the lock between batches */
			struct timespec gap = { 0, 5 * 1000000 };
			nanosleep(&gap, NULL);
		} else {
			break;
		}
	} while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED));
	return rc == SQLITE_DONE ? 0 : -1;
}

static void *run(void *arg)
{
	struct index_retainer *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		pthread_mutex_unlock(&r->mu);
		if (pass(r) < 0) {
			if (!r->warned)
				r->env->log(r->env, SINK_LOG_WARN, "%s: removing rows past retain_ms: %s (tried again each "
					    "second)", r->path, sqlite3_errmsg(r->db));
			r->warned = 1;
		} else {
			r->warned = 0;
		}
		pthread_mutex_lock(&r->mu);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += RETAIN_EVERY_MS / 1000;
		while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void close_all(struct index_retainer *r)
{
	sqlite3_finalize(r->del_rec);
	sqlite3_close(r->db);
	free(r);
}

int index_retain_start(struct index_retainer **ret, const char *path, int64_t retain_ms,
		       const struct sink_env *env, char err[SINK_ERR_LEN])
{
	struct index_retainer *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, SINK_ERR_LEN, "%s: out of memory for retain_ms", path);
		return -ENOMEM;
	}
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->retain_ms = retain_ms;
	r->env = env;
	int ok = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK;
	if (ok)
		sqlite3_busy_timeout(r->db, 10000);
	ok = ok && sqlite3_prepare_v3(r->db, "DELETE FROM records WHERE lsn IN (SELECT lsn FROM records WHERE ts_ns < ?1 "
				      "LIMIT " STR(RETAIN_BATCH) ")", -1, SQLITE_PREPARE_PERSISTENT, &r->del_rec,
				      NULL) == SQLITE_OK;
	if (!ok) {
		snprintf(err, SINK_ERR_LEN, "%s: retain_ms: %s", path, r->db ? sqlite3_errmsg(r->db) : "out of memory");
		close_all(r);
		return -EIO;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	int e = pthread_create(&r->th, NULL, run, r);
	if (e) {
		snprintf(err, SINK_ERR_LEN, "%s: retain_ms: no thread: %s", path, strerror(e));
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		close_all(r);
		return -e;
	}
	*ret = r;
	return 0;
}

void index_retain_stop(struct index_retainer *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->th, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	close_all(r);
}
