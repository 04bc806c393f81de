#include "shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
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
		snprintf(err, SHM_ERR_LEN, "shm %s: layout version %u, this build speaks %u; stop every stage and remove /dev/shm%s",
			 name, ctl->layout_version, SHM_LAYOUT_VERSION, name);
		return -EPROTO;
	}
	if (ctl->size != size) {
		snprintf(err, SHM_ERR_LEN, "shm %s: size %llu does not match its header (%llu)", name,
			 (unsigned long long)size, (unsigned long long)ctl->size);
		return -EPROTO;
	}
	if (g && (ctl->nrings != g->nrings || ctl->ring_bytes != g->ring_bytes || ctl->ndevices != g->ndevices)) {
		snprintf(err, SHM_ERR_LEN,
			 "shm %s: made for %u ring(s) of %llu bytes and %u devices, config says %u of %llu and %u; "
			 "stop every stage and remove /dev/shm%s to change it",
			 name, ctl->nrings, (unsigned long long)ctl->ring_bytes, ctl->ndevices, g->nrings,
			 (unsigned long long)g->ring_bytes, g->ndevices, name);
		return -EPROTO;
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
	snprintf(err, SHM_ERR_LEN, "shm %s: never initialised (creator died?); stop every stage and remove /dev/shm%s",
		 name, name);
	return -EPROTO;
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
			snprintf(err, SHM_ERR_LEN, "shm %s: open: %s", name, strerror(-r));
			return r;
		}
		struct stat st;
		/* a region someone else made could be read and written by them */
		if (fstat(fd, &st) == 0 && ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 077))) {
			snprintf(err, SHM_ERR_LEN,
				 "shm %s: owned by uid %u with mode %04o; it must belong to this user (uid %u) or "
				 "root with mode 0600: remove /dev/shm%s if it is not the pipeline's",
				 name, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid(), name);
			r = -EPERM;
			goto fail;
		}
		if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != size) {
			/* the creator may be between shm_open and ftruncate */
			for (int i = 0; i < 200 && fstat(fd, &st) == 0 && st.st_size == 0; i++) {
				struct timespec ts = { 0, 10 * 1000 * 1000 };
				nanosleep(&ts, NULL);
			}
			if ((uint64_t)st.st_size != size) {
				snprintf(err, SHM_ERR_LEN,
					 "shm %s: %lld bytes, config needs %llu (different rings/devices?); "
					 "stop every stage and remove /dev/shm%s to change it",
					 name, (long long)st.st_size, (unsigned long long)size, name);
				r = -EPROTO;
				goto fail;
			}
		}
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		snprintf(err, SHM_ERR_LEN, "shm %s: mmap %llu bytes: %s", name, (unsigned long long)size,
			 strerror(-r));
		goto fail;
	}
	close(fd);
	fd = -1;
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
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	return 0;
}

void shm_close_region(shm_region_t *r)
{
	if (r && r->ctl) {
		munmap(r->ctl, r->size);
		r->ctl = NULL;
	}
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
		"sync_us_lt_65536", "sync_us_ge_65536",
	};
	static const char *const sc[SC_MAX] = { "records", "bytes", "batches", "retries", "fatal", "commits" };
	switch (s) {
	case STAGE_INGESTD: return i < IC_MAX ? ic[i] : NULL;
	case STAGE_FLUSHERD: return i < FC_MAX ? fc[i] : NULL;
	case STAGE_SINKD: return i < SC_MAX ? sc[i] : NULL;
	default: return NULL;
	}
}

const char *shm_sink_state_name(unsigned st)
{
	static const char *const n[SINK_ST_MAX] = { "off", "running", "retrying", "failed" };
	return st < SINK_ST_MAX ? n[st] : "?";
}
