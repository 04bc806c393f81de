#include "shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/ring.h"


#define PAGE 4096u
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))

void shm_region_name(const char *instance, char *buf, size_t len)
{
	snprintf(buf, len, "/module-ingest.%s", instance);
}

static void layout(const struct shm_geom *g, uint64_t *ring_off, uint64_t *stride, uint64_t *dev_off,
		   uint64_t *size)
{
	*ring_off = ALIGN_UP(sizeof(struct shm_ctl), PAGE);
	*stride = ALIGN_UP(sizeof(struct ring_hdr), PAGE) + g->ring_bytes;
	*dev_off = *ring_off + *stride * g->nrings;
	*size = ALIGN_UP(*dev_off + (uint64_t)g->ndevices * sizeof(struct shm_dev), PAGE);
}

static int init_region(struct shm_ctl *ctl, const struct shm_geom *g, uint64_t size)
{
	uint64_t ring_off, stride, dev_off, sz;
	layout(g, &ring_off, &stride, &dev_off, &sz);
	ctl->layout_version = SHM_LAYOUT_VERSION;
	ctl->size = size;
	if (getrandom(&ctl->shm_id, sizeof(ctl->shm_id), 0) != sizeof(ctl->shm_id))
		ctl->shm_id = clock_real_ns() ^ (uint64_t)getpid() << 32;
	if (ctl->shm_id == 0)
		ctl->shm_id = 1;
	ctl->nrings = g->nrings;
	ctl->ndevices = g->ndevices;
	ctl->ring_bytes = g->ring_bytes;
	ctl->ring_off = ring_off;
	ctl->ring_stride = stride;
	ctl->dev_off = dev_off;
	ctl->created_ns = clock_real_ns();
	for (uint32_t i = 0; i < g->nrings; i++)
		ring_init(shm_ring_hdr(ctl, i), g->ring_bytes);
	/* a fresh ftruncate'd region reads as zeros: devices are empty */
	shm_store_release(&ctl->magic, SHM_MAGIC);
	return 0;
}

static int check_region(const struct shm_ctl *ctl, size_t size, const struct shm_geom *g, const char *name,
			char err[SHM_ERR_LEN])
{
	if (ctl->layout_version != SHM_LAYOUT_VERSION) {
		snprintf(err, SHM_ERR_LEN, "shm %s: layout version %u, this build speaks %u", name,
			 ctl->layout_version, SHM_LAYOUT_VERSION);
		return -ESTALE;
	}
	if (ctl->size != size) {
		snprintf(err, SHM_ERR_LEN, "shm %s: size %llu does not match its header (%llu)", name,
			 (unsigned long long)size, (unsigned long long)ctl->size);
		return -ESTALE;
	}
	if (g && (ctl->nrings != g->nrings || ctl->ring_bytes != g->ring_bytes || ctl->ndevices != g->ndevices)) {
		snprintf(err, SHM_ERR_LEN,
			 "shm %s: made for %u ring(s) of %llu bytes and %u devices, config says %u of %llu and %u",
			 name, ctl->nrings, (unsigned long long)ctl->ring_bytes, ctl->ndevices, g->nrings,
			 (unsigned long long)g->ring_bytes, g->ndevices);
		return -ESTALE;
	}
	return 0;
}

/* A region whose creator died before storing the magic never becomes valid;
 * waiting a bounded time tells that apart from a creator still at work. */
static int wait_magic(const struct shm_ctl *ctl, const char *name, char err[SHM_ERR_LEN])
{
	for (int i = 0; i < 200; i++) {
		uint32_t m = shm_load_acquire(&ctl->magic);
		if (m == SHM_MAGIC)
			return 0;
		if (m != 0) {
			snprintf(err, SHM_ERR_LEN, "shm %s: bad magic 0x%08x (not a module-ingest region)", name, m);
			return -EPROTO;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	snprintf(err, SHM_ERR_LEN, "shm %s: never initialised (its creator died)", name);
	return -ESTALE;
}

/* Waits (bounded) for a creator between shm_open and ftruncate. */
static int wait_size(int fd, struct stat *st)
{
	for (int i = 0; i < 200; i++) {
		if (fstat(fd, st) < 0)
			return -errno;
		if (st->st_size != 0)
			return 0;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

int shm_open_region(const char *instance, const struct shm_geom *g, int create, shm_region_t *ret,
		    char err[SHM_ERR_LEN])
{
	char name[96];
	uint64_t ring_off, stride, dev_off, size;
	int fd = -1, created = 0, r;
	void *p = MAP_FAILED;

	if (g->nrings < 1 || g->nrings > SHM_MAX_RINGS) {
		snprintf(err, SHM_ERR_LEN, "shm: %u rings: must be 1..%d", g->nrings, SHM_MAX_RINGS);
		return -EINVAL;
	}
	shm_region_name(instance, name, sizeof(name));
	layout(g, &ring_off, &stride, &dev_off, &size);
again:
	created = 0;
	if (create) {
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			created = 1;
			if (ftruncate(fd, (off_t)size) < 0) {
				r = -errno;
				snprintf(err, SHM_ERR_LEN, "shm %s: ftruncate %llu: %s", name,
					 (unsigned long long)size, strerror(-r));
				shm_unlink(name);
				goto fail;
			}
		} else if (errno != EEXIST) {
			r = -errno;
			snprintf(err, SHM_ERR_LEN, "shm %s: create: %s", name, strerror(-r));
			return r;
		}
	}
	if (fd < 0) {
		fd = shm_open(name, O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0) {
			r = -errno;
			if (r == -ENOENT && create)
				goto again;   /* discarded between the two opens */
			snprintf(err, SHM_ERR_LEN, "shm %s: open: %s", name, strerror(-r));
			return r;
		}
	}
	/* the shared lock says "a stage holds this region" (shm_release,
	 * shm_discard); a region unlinked before we got it is not the one the
	 * name leads to any more */
	struct stat st;
	if (flock(fd, LOCK_SH) < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, SHM_ERR_LEN, "shm %s: lock: %s", name, strerror(-r));
		goto fail;
	}
	if (st.st_nlink == 0) {
		close(fd);
		fd = -1;
		goto again;
	}
	if (!created) {
		/* a region someone else made could be read and written by them */
		if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 077)) {
			snprintf(err, SHM_ERR_LEN,
				 "shm %s: owned by uid %u with mode %04o; it must belong to this user (uid %u) or "
				 "root with mode 0600: remove /dev/shm%s if it is not the pipeline's",
				 name, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid(), name);
			r = -EPERM;
			goto fail;
		}
		if ((r = wait_size(fd, &st)) < 0) {
			snprintf(err, SHM_ERR_LEN, "shm %s: fstat: %s", name, strerror(-r));
			goto fail;
		}
		if ((uint64_t)st.st_size != size) {
			snprintf(err, SHM_ERR_LEN, "shm %s: %lld bytes, config needs %llu (other rings, ring_bytes or "
				 "devices, or another build)", name, (long long)st.st_size, (unsigned long long)size);
			r = -ESTALE;
			goto fail;
		}
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		snprintf(err, SHM_ERR_LEN, "shm %s: mmap %llu bytes: %s", name, (unsigned long long)size,
			 strerror(-r));
		goto fail;
	}
	struct shm_ctl *ctl = p;
	if (created) {
		init_region(ctl, g, size);
	} else {
		if ((r = wait_magic(ctl, name, err)) < 0 || (r = check_region(ctl, size, g, name, err)) < 0)
			goto fail;
	}
	ret->ctl = ctl;
	ret->size = size;
	ret->created = created;
	ret->fd = fd;
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	return 0;
fail:
	if (p != MAP_FAILED)
		munmap(p, size);
	if (fd >= 0)
		close(fd);
	return r;
}

int shm_attach_ro(const char *instance, shm_region_t *ret, char err[SHM_ERR_LEN])
{
	char name[96];
	struct stat st;
	int r;
	shm_region_name(instance, name, sizeof(name));
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, SHM_ERR_LEN, "shm %s: %s (is the pipeline running for instance '%s'?)", name,
			 strerror(-r), instance);
		return r;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct shm_ctl)) {
		snprintf(err, SHM_ERR_LEN, "shm %s: too small to be a module-ingest region", name);
		close(fd);
		return -EPROTO;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	r = p == MAP_FAILED ? -errno : 0;
	close(fd);
	if (r < 0) {
		snprintf(err, SHM_ERR_LEN, "shm %s: mmap: %s", name, strerror(-r));
		return r;
	}
	struct shm_ctl *ctl = p;
	if ((r = wait_magic(ctl, name, err)) < 0 || (r = check_region(ctl, (size_t)st.st_size, NULL, name, err)) < 0) {
		munmap(p, (size_t)st.st_size);
		return r;
	}
	ret->ctl = ctl;
	ret->size = (size_t)st.st_size;
	ret->created = 0;
	ret->fd = -1;
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	return 0;
}

void shm_close_region(shm_region_t *r)
{
	if (!r)
		return;
	if (r->ctl) {
		munmap(r->ctl, r->size);
		r->ctl = NULL;
	}
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

int shm_unlink_instance(const char *instance)
{
	char name[96];
	shm_region_name(instance, name, sizeof(name));
	return shm_unlink(name) < 0 ? -errno : 0;
}

void shm_stage_start(struct shm_ctl *ctl, enum shm_stage_id s)
{
	struct shm_stage *st = &ctl->stage[s];
	if (st->started_ns)
		shm_store_relaxed(&st->restarts, st->restarts + 1);
	shm_store_relaxed(&st->pid_start, shm_pid_start(getpid()));
	shm_store_relaxed(&st->started_ns, clock_real_ns());
	shm_store_relaxed(&st->heartbeat_ns, clock_real_ns());
	shm_store_release(&st->pid, (int32_t)getpid());
}

void shm_stage_heartbeat(struct shm_ctl *ctl, enum shm_stage_id s)
{
	shm_store_relaxed(&ctl->stage[s].heartbeat_ns, clock_real_ns());
}

void shm_stage_stop(struct shm_ctl *ctl, enum shm_stage_id s)
{
	shm_store_release(&ctl->stage[s].pid, 0);
}

/* /proc/PID/stat: the state (field 3) and the start time (field 22); the
 * command name before them may hold spaces and parentheses, so fields are
 * counted from the last ')'. */
static int pid_stat(int32_t pid, char *state, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	p += 2;
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
	}
	*start = strtoull(p, NULL, 10);
	return 0;
}

uint64_t shm_pid_start(int32_t pid)
{
	char state;
	uint64_t start;
	return pid_stat(pid, &state, &start) == 0 ? start : 0;
}

int shm_pid_alive(int32_t pid, uint64_t start)
{
	char state;
	uint64_t st;
	if (pid <= 0 || pid_stat(pid, &state, &st) < 0)
		return 0;
	if (state == 'Z' || state == 'X')
		return 0;
	return !start || st == start;
}

int shm_stage_alive(const struct shm_ctl *ctl, enum shm_stage_id s)
{
	int32_t pid = shm_load_acquire(&ctl->stage[s].pid);
	return shm_pid_alive(pid, shm_load_relaxed(&ctl->stage[s].pid_start));
}

int shm_live_holders(const struct shm_ctl *ctl, char *buf, size_t len)
{
	int n = 0;
	size_t used = 0;
	if (len)
		buf[0] = 0;
	for (int s = 0; s < STAGE_MAX; s++) {
		int32_t pid = shm_load_acquire(&ctl->stage[s].pid);
		if (pid == getpid() || !shm_stage_alive(ctl, (enum shm_stage_id)s))
			continue;
		if (used < len) {
			int w = snprintf(buf + used, len - used, "%s%s %d", n ? ", " : "",
					 shm_stage_name((enum shm_stage_id)s), (int)pid);
			used += w > 0 ? (size_t)w : 0;
		}
		n++;
	}
	for (int i = 0; i < SHM_MAX_SINKS; i++) {
		const struct shm_sink *k = &ctl->sink[i];
		int32_t pid = shm_load_acquire(&k->pid);
		if (pid == getpid() || !shm_pid_alive(pid, shm_load_relaxed(&k->pid_start)))
			continue;
		/* the main sinkd runs most instances: it is named once above */
		if (pid == shm_load_acquire(&ctl->stage[STAGE_SINKD].pid))
			continue;
		if (used < len) {
			int w = snprintf(buf + used, len - used, "%ssinkd --only %.*s %d", n ? ", " : "",
					 (int)sizeof(k->name), k->name, (int)pid);
			used += w > 0 ? (size_t)w : 0;
		}
		n++;
	}
	return n;
}

int shm_discard(const char *instance, char holders[SHM_ERR_LEN])
{
	char name[96];
	struct stat st;
	shm_region_name(instance, name, sizeof(name));
	holders[0] = 0;
	int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		int r = -errno;
		snprintf(holders, SHM_ERR_LEN, "shm %s: open: %s", name, strerror(-r));
		return r;
	}
	/* nobody holds it at all: nothing to ask */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		goto unlink;
	/* held: by live stages of some pipeline (refuse), or only by stages
	 * of this build waiting for a flusherd to serve it (they re-attach) */
	if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(struct shm_ctl)) {
		const struct shm_ctl *ctl = mmap(NULL, sizeof(*ctl), PROT_READ, MAP_SHARED, fd, 0);
		if (ctl != MAP_FAILED) {
			int ok = shm_load_acquire(&ctl->magic) == SHM_MAGIC &&
				 ctl->layout_version == SHM_LAYOUT_VERSION;
			char who[160];
			int n = ok ? shm_live_holders(ctl, who, sizeof(who)) : -1;
			if (n > 0)
				snprintf(holders, SHM_ERR_LEN, "%s, serving data dir %.*s", who,
					 (int)sizeof(ctl->data_dir), ctl->data_dir[0] ? ctl->data_dir : "(unknown)");
			else if (n < 0)
				snprintf(holders, SHM_ERR_LEN, "processes of another build (layout version %u)",
					 ctl->layout_version);
			munmap((void *)ctl, sizeof(*ctl));
			if (n != 0) {
				close(fd);
				return -EBUSY;
			}
		}
	}
unlink:
	/* the name may lead to a newer region by now: unlink only ours */
	if (fstat(fd, &st) == 0 && st.st_nlink > 0)
		shm_unlink(name);
	close(fd);
	return 0;
}

int shm_region_unlinked(const shm_region_t *r)
{
	struct stat st;
	return r->fd >= 0 && fstat(r->fd, &st) == 0 && st.st_nlink == 0;
}

int shm_release(shm_region_t *r, char msg[SHM_ERR_LEN])
{
	int removed = 0;
	msg[0] = 0;
	if (!r->ctl || r->fd < 0)
		goto out;
	/* another holder keeps it (converting our shared lock may drop it:
	 * we are closing anyway) */
	if (flock(r->fd, LOCK_EX | LOCK_NB) < 0)
		goto out;
	struct shm_ctl *ctl = r->ctl;
	char who[8];
	if (shm_live_holders(ctl, who, sizeof(who)) > 0)
		goto out;
	uint64_t left = 0;
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		struct ring_hdr *h = shm_ring_hdr(ctl, i);
		left += shm_load_acquire(&h->head) - shm_load_acquire(&h->released);
	}
	if (left) {
		snprintf(msg, SHM_ERR_LEN, "shm %s: kept: its rings hold %llu bytes the log does not have yet "
			 "(the next flusherd writes them)", r->name, (unsigned long long)left);
		goto out;
	}
	struct stat st;
	if (fstat(r->fd, &st) == 0 && st.st_nlink > 0 && shm_unlink(r->name) == 0) {
		removed = 1;
		snprintf(msg, SHM_ERR_LEN, "shm %s: removed (the last stage out)", r->name);
	}
out:
	shm_close_region(r);
	return removed;
}

int shm_set_ready(struct shm_ctl *ctl, const char *data_dir, uint64_t log_id)
{
	struct stat st;
	if (stat(data_dir, &st) < 0)
		return -errno;
	char real[PATH_MAX];
	const char *shown = realpath(data_dir, real) ? real : data_dir;
	shm_store_relaxed(&ctl->data_dev, (uint64_t)st.st_dev);
	shm_store_relaxed(&ctl->data_ino, (uint64_t)st.st_ino);
	snprintf(ctl->data_dir, sizeof(ctl->data_dir), "%s", shown);
	shm_store_relaxed(&ctl->log_id, log_id);
	shm_store_relaxed(&ctl->ready_start, shm_pid_start(getpid()));
	shm_store_release(&ctl->ready, 1);
	shm_store_release(&ctl->ready_pid, (int32_t)getpid());
	return 0;
}

void shm_clear_ready(struct shm_ctl *ctl)
{
	shm_store_release(&ctl->ready_pid, 0);
}

/* The flusherd serving ctl, if it is alive: its pid, else 0. */
static int32_t serving_flusherd(const struct shm_ctl *ctl)
{
	int32_t pid = shm_load_acquire(&ctl->ready_pid);
	return pid && shm_pid_alive(pid, shm_load_relaxed(&ctl->ready_start)) ? pid : 0;
}

static void nap_10ms(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

int shm_attach_stage(const char *instance, const struct shm_geom *g, const char *data_dir,
		     const volatile int *stop, void (*waiting)(const char *why), shm_region_t *ret,
		     char err[SHM_ERR_LEN])
{
	const char *said = NULL;
#define WAITING(why) do { if (said != (why)) { said = (why); if (waiting) waiting(why); } } while (0)
	static const char W_NONE[] = "waiting for flusherd to create the shm region";
	static const char W_STALE[] = "the shm region does not fit this config; waiting for flusherd to make it anew";
	static const char W_RECOVER[] = "waiting for flusherd to recover the log";
	for (;;) {
		if (*stop)
			return -EINTR;
		shm_region_t reg = { .fd = -1 };
		int r = shm_open_region(instance, g, 0, &reg, err);
		if (r == -ENOENT) {
			WAITING(W_NONE);
			nap_10ms();
			continue;
		}
		if (r == -ESTALE) {
			/* a live flusherd serving it is another pipeline (or this
			 * one before a config change): nothing to wait for */
			shm_region_t ro = { .fd = -1 };
			char why[SHM_ERR_LEN], e2[SHM_ERR_LEN];
			snprintf(why, sizeof(why), "%s", err);
			int32_t pid = 0;
			if (shm_attach_ro(instance, &ro, e2) == 0) {
				pid = serving_flusherd(ro.ctl);
				shm_close_region(&ro);
			}
			if (pid) {
				snprintf(err, SHM_ERR_LEN,
					 "instance '%s' is in use by a pipeline of another configuration (flusherd "
					 "pid %d): %s; stop it first, or give this pipeline another [instance] name "
					 "(INGEST_INSTANCE_NAME)", instance, (int)pid, why);
				return -EUSERS;
			}
			WAITING(W_STALE);
			nap_10ms();
			continue;
		}
		if (r < 0)
			return r;
		for (;;) {
			int32_t pid = serving_flusherd(reg.ctl);
			if (pid) {
				struct stat st;
				if (stat(data_dir, &st) == 0 && (uint64_t)st.st_dev == reg.ctl->data_dev &&
				    (uint64_t)st.st_ino == reg.ctl->data_ino) {
					*ret = reg;
					return 0;
				}
				snprintf(err, SHM_ERR_LEN,
					 "instance '%s' is in use by another pipeline: flusherd pid %d serves data "
					 "dir %.*s, this config's is %s; give this pipeline another [instance] name "
					 "(INGEST_INSTANCE_NAME)", instance, (int)pid, (int)sizeof(reg.ctl->data_dir),
					 reg.ctl->data_dir, data_dir);
				shm_close_region(&reg);
				return -EUSERS;
			}
			if (*stop || shm_region_unlinked(&reg))
				break;
			WAITING(W_RECOVER);
			nap_10ms();
		}
		shm_close_region(&reg);
	}
#undef WAITING
}

const char *shm_stage_name(enum shm_stage_id s)
{
	static const char *const n[STAGE_MAX] = { "ingestd", "flusherd", "sinkd" };
	return s < STAGE_MAX ? n[s] : "?";
}

const char *shm_counter_name(enum shm_stage_id s, unsigned i)
{
	static const char *const ic[IC_MAX] = {
		"conn_accepted", "conn_open", "conn_refused", "conn_idle_closed", "hello",
		"session_takeover", "frames_in", "bytes_in", "frames_stored", "frames_retry",
		"acks_sent", "nacks_sent", "nack_bad_checksum", "nack_too_large", "nack_bad_sequence",
		"nack_not_authenticated", "nack_malformed", "nack_overloaded", "framing_errors",
		"ring_full_stalls", "ndjson_lines", "ndjson_errors", "pool_bytes",
		"udp_datagrams", "udp_stored", "udp_replayed", "udp_dropped", "udp_ring_full", "udp_rxq_overflow",
		"bans", "banned_accepts", "filter_mode",
		"nack_topic_not_allowed", "nack_auth_failed", "auth_ok", "auth_failed", "bad_mac", "sealed_opened",
		"seal_failed", "keys_reloads", "reload_closed", "udp_bad_mac", "handshake_timeouts",
	};
	static const char *const fc[FC_MAX] = {
		"records", "bytes", "writes", "syncs", "sync_ns_total", "sync_ns_max", "segments",
		"write_errors", "sync_errors", "stalled", "durable_lsn", "checkpoints",
		"recovered_records", "recovery_cut_bytes", "recovery_ns",
		"sync_us_lt_64", "sync_us_lt_128", "sync_us_lt_256", "sync_us_lt_512", "sync_us_lt_1024",
		"sync_us_lt_2048", "sync_us_lt_4096", "sync_us_lt_8192", "sync_us_lt_16384", "sync_us_lt_32768",
		"sync_us_lt_65536", "sync_us_ge_65536", "retired_segments", "retired_bytes",
		"recycled_segments",
	};
	static const char *const sc[SC_MAX] = { "records", "bytes", "batches", "retries", "fatal", "commits",
						"skipped_records", "skipped_bytes" };
	switch (s) {
	case STAGE_INGESTD: return i < IC_MAX ? ic[i] : NULL;
	case STAGE_FLUSHERD: return i < FC_MAX ? fc[i] : NULL;
	case STAGE_SINKD: return i < SC_MAX ? sc[i] : NULL;
	default: return NULL;
	}
}

const char *shm_sink_state_name(unsigned st)
{
	static const char *const n[SINK_ST_MAX] = { "off", "running", "retrying", "stopped", "skipping", "failing" };
	return st < SINK_ST_MAX ? n[st] : "?";
}
