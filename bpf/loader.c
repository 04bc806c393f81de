/* bpfl — loader for bpf/filter.bpf.c on its bpftool skeleton; see loader.h.
 *
 * Pinning is done by hand rather than with LIBBPF_PIN_BY_NAME, so that a
 * missing bpffs degrades to unpinned maps instead of a failed load, an
 * incompatible pinned map (older layout) is replaced rather than refused,
 * and every step can say what went wrong.
 */
#include "bpf/loader.h"

#include <byteswap.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/sock_diag.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/frame.h"
#include "filter.skel.h"

_Static_assert(FILTER_HDR_LEN == MI_HDR_LEN, "filter.h and frame.h disagree on the header size");
_Static_assert(FILTER_MAGIC0 == MI_MAGIC0 && FILTER_MAGIC1 == MI_MAGIC1, "magic");
_Static_assert(FILTER_VERSION == MI_VERSION, "version");
_Static_assert(FILTER_TYPE_DATA == MI_DATA, "DATA type");
_Static_assert(FILTER_F_MAC == MI_F_MAC && FILTER_F_SEALED == MI_F_SEALED, "flags");
_Static_assert(FILTER_MAX_FRAME_DEFAULT == MI_MAX_FRAME_DEFAULT, "max frame default");
_Static_assert(sizeof(struct drop_ctr) == 16, "drop_ctr is the map value: no padding");
_Static_assert(sizeof(struct ban_key) == sizeof(struct in6_addr), "ban key is an IPv6 address");

#define BPFFS "/sys/fs/bpf"
#define OPEN_TRIES 3    /* a concurrent first start can pin between our get and pin */

enum map_id { M_DROPS, M_UDROPS, M_BANS, M_COUNT };
static const char *const map_names[M_COUNT] = { "drops", "udrops", "bans" };

struct bpfl {
	struct filter_bpf *skel;
	int fd[M_COUNT];
	struct drop_ctr *ucnt;     /* udrops, mmap'd */
	size_t ucnt_len;
	char desc[512];
};

/* ---- libbpf messages: captured, never printed ---- */

static char cap_buf[4096];
static size_t cap_len;

static void cap_append(const char *s, size_t n)
{
	/* the latest messages say what failed: keep the tail */
	if (n >= sizeof(cap_buf))
		n = sizeof(cap_buf) - 1;
	if (cap_len + n >= sizeof(cap_buf)) {
		size_t drop = cap_len + n - sizeof(cap_buf) + 1;
		if (drop > cap_len)
			drop = cap_len;
		memmove(cap_buf, cap_buf + drop, cap_len - drop);
		cap_len -= drop;
	}
	memcpy(cap_buf + cap_len, s, n);
	cap_len += n;
	cap_buf[cap_len] = 0;
}

/* A verifier log comes as one message, possibly megabytes long; its last
 * lines hold the error.  Keeps those, without the statistics lines. */
static void cap_verifier_log(char *log)
{
	const char *keep[3] = { NULL, NULL, NULL };
	char *save = NULL, *l;

	for (l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(l, "processed ", 10) || !strncmp(l, "verification time", 17) ||
		    !strncmp(l, "stack depth", 11) || !strncmp(l, "-- ", 3))
			continue;
		keep[0] = keep[1];
		keep[1] = keep[2];
		keep[2] = l;
	}
	cap_append("verifier:", 9);
	for (int i = 0; i < 3; i++)
		if (keep[i]) {
			cap_append(i && keep[i - 1] ? " | " : " ", i && keep[i - 1] ? 3 : 1);
			cap_append(keep[i], strlen(keep[i]));
		}
	cap_append("\n", 1);
}

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static const char begin[] = "-- BEGIN PROG LOAD LOG --";
	char *msg = NULL, *m, *log;

	if (level != LIBBPF_WARN)
		return 0;
	if (vasprintf(&msg, fmt, ap) < 0)
		return 0;
	m = msg;
	if (!strncmp(m, "libbpf: ", 8))
		m += 8;
	log = strstr(m, begin);
	if (log) {
		char *end = strstr(log, "-- END PROG LOAD LOG --");
		if (end)
			*end = 0;
		cap_verifier_log(log + sizeof(begin) - 1);
	} else {
		cap_append(m, strlen(m));
	}
	free(msg);
	return 0;
}

/* The captured lines joined by "; ", then forgotten. */
static void capture_summary(char *out, size_t outlen)
{
	char *save = NULL, *l;
	size_t o = 0;

	out[0] = 0;
	for (l = strtok_r(cap_buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (o + 3 < outlen)
			o += (size_t)snprintf(out + o, outlen - o, "%s%s", o ? "; " : "", l);
	if (o >= outlen && outlen)
		out[outlen - 1] = 0;
	cap_len = 0;
	cap_buf[0] = 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* err = "<what>: <errno text> (<libbpf/verifier text>)" */
static void set_err_libbpf(char *err, size_t errlen, const char *what, int r)
{
	char detail[1024];

	capture_summary(detail, sizeof(detail));
	set_err(err, errlen, "%s: %s%s%s%s%s", what, strerror(-r),
		r == -EPERM ? " (needs root, or CAP_BPF and CAP_PERFMON)" : "", detail[0] ? " [libbpf: " : "",
		detail, detail[0] ? "]" : "");
}

/* ---- names and paths ---- */

static int instance_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= 63 && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static void pin_path(char *out, size_t len, const char *instance, const char *map)
{
	snprintf(out, len, "%s/%s/%s", BPFL_PIN_ROOT, instance, map);
}

/* bpffs mounted at /sys/fs/bpf, mounting it if we may.  Returns 0 or
 * -errno with why. */
static int bpffs_ready(char *why, size_t whylen)
{
	struct statfs st;

	if (statfs(BPFFS, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", BPFFS, "bpf", 0, "mode=0700") == 0)
		return 0;
	int r = -errno;
	set_err(why, whylen, "bpffs is not mounted on %s and mounting it failed: %s", BPFFS, strerror(-r));
	return r;
}

static int mkdir_ok(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* ---- pinned map reuse ---- */

/* Can the pinned map fd stand in for m?  Returns 1 yes, 0 no (why says
 * what differs), or -errno. */
static int map_compatible(int fd, const struct bpf_map *m, enum map_id id, char *why, size_t whylen)
{
	struct bpf_map_info info;
	__u32 ilen = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen) < 0)
		return -errno;
	if (info.type != (__u32)bpf_map__type(m) || info.key_size != bpf_map__key_size(m) ||
	    info.value_size != bpf_map__value_size(m) || info.map_flags != bpf_map__map_flags(m)) {
		set_err(why, whylen, "type %u key %u value %u flags %#x, want %u/%u/%u/%#x", info.type,
			info.key_size, info.value_size, info.map_flags, (unsigned)bpf_map__type(m),
			bpf_map__key_size(m), bpf_map__value_size(m), bpf_map__map_flags(m));
		return 0;
	}
	/* more reasons than we know is a newer layout we can still use; fewer
	 * would leave reasons without a slot.  The bans capacity is free. */
	if (id != M_BANS && info.max_entries < DROP_REASON_MAX) {
		set_err(why, whylen, "%u entries, want %u", info.max_entries, (unsigned)DROP_REASON_MAX);
		return 0;
	}
	return 1;
}

enum map_state { MS_CREATED, MS_REUSED, MS_REPLACED, MS_UNPINNED };

struct open_state {
	enum map_state st[M_COUNT];
	char note[M_COUNT][128];
	char unpinned_why[160];
	int pinned;
};

/* Before load: reuse each pinned map that fits; unlink those that do not. */
static int reuse_pinned(struct filter_bpf *skel, const char *instance, struct open_state *os, char *err,
			size_t errlen)
{
	struct bpf_map *maps[M_COUNT] = { skel->maps.drops, skel->maps.udrops, skel->maps.bans };
	char path[160];

	for (int i = 0; i < M_COUNT; i++) {
		os->st[i] = MS_CREATED;
		os->note[i][0] = 0;
		pin_path(path, sizeof(path), instance, map_names[i]);
		int fd = bpf_obj_get(path);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			int r = -errno;
			set_err(err, errlen, "open pinned %s: %s", path, strerror(-r));
			return r;
		}
		int ok = map_compatible(fd, maps[i], (enum map_id)i, os->note[i], sizeof(os->note[i]));
		if (ok > 0) {
			int r = bpf_map__reuse_fd(maps[i], fd);
			close(fd);
			if (r < 0) {
				set_err(err, errlen, "reuse pinned %s: %s", path, strerror(-r));
				return r;
			}
			os->st[i] = MS_REUSED;
			continue;
		}
		close(fd);
		if (ok < 0) {
			set_err(err, errlen, "inspect pinned %s: %s", path, strerror(-ok));
			return ok;
		}
		/* an older layout: its counters cannot be carried over */
		if (unlink(path) < 0 && errno != ENOENT) {
			int r = -errno;
			set_err(err, errlen, "replace incompatible pinned %s: %s", path, strerror(-r));
			return r;
		}
		os->st[i] = MS_REPLACED;
	}
	return 0;
}

/* After load: pin what was not reused.  -EEXIST means another process
 * pinned first: the caller starts over and reuses its maps. */
static int pin_new(struct filter_bpf *skel, const char *instance, struct open_state *os)
{
	struct bpf_map *maps[M_COUNT] = { skel->maps.drops, skel->maps.udrops, skel->maps.bans };
	char path[160];

	for (int i = 0; i < M_COUNT; i++) {
		if (os->st[i] == MS_REUSED)
			continue;
		pin_path(path, sizeof(path), instance, map_names[i]);
		if (bpf_obj_pin(bpf_map__fd(maps[i]), path) == 0)
			continue;
		int r = -errno;
		if (r == -EEXIST)
			return r;
		/* e.g. a read-only or foreign directory: keep running, unpinned */
		os->st[i] = MS_UNPINNED;
		snprintf(os->note[i], sizeof(os->note[i]), "pin %s: %s", path, strerror(-r));
	}
	return 0;
}

static void describe(struct bpfl *b, const char *instance, uint32_t max_frame, uint32_t types,
		     uint16_t fmask, uint16_t fwant, const struct open_state *os)
{
	static const char *const st_names[] = { "created", "reused", "replaced", "not pinned" };
	size_t o = 0, cap = sizeof(b->desc);

	o += (size_t)snprintf(b->desc, cap, "eBPF filters loaded (max_frame %u, types %#x, flags & %#x == %#x); ",
			      max_frame, types, fmask, fwant);
	if (os->pinned)
		o += (size_t)snprintf(b->desc + o, o < cap ? cap - o : 0, "maps under %s/%s:", BPFL_PIN_ROOT,
				      instance);
	else
		o += (size_t)snprintf(b->desc + o, o < cap ? cap - o : 0,
				      "maps not pinned (%s), read them with `bpftool map dump id N`:",
				      os->unpinned_why);
	for (int i = 0; i < M_COUNT; i++) {
		struct bpf_map_info info;
		__u32 ilen = sizeof(info);
		memset(&info, 0, sizeof(info));
		bpf_obj_get_info_by_fd(b->fd[i], &info, &ilen);
		o += (size_t)snprintf(b->desc + o, o < cap ? cap - o : 0, "%s %s id %u%s%s%s%s%s", i ? "," : "",
				      map_names[i], info.id, os->pinned ? " " : "", os->pinned ? st_names[os->st[i]] : "",
				      os->note[i][0] ? " (" : "", os->note[i], os->note[i][0] ? ")" : "");
	}
}

/* ---- open / close ---- */

static void teardown(struct bpfl *b)
{
	if (!b)
		return;
	if (b->ucnt)
		munmap(b->ucnt, b->ucnt_len);
	filter_bpf__destroy(b->skel);
	free(b);
}

/* One attempt: open the skeleton, reuse, load, pin.  -EEXIST: retry. */
static int open_once(const char *instance, uint32_t max_frame, uint32_t types, uint16_t fmask, uint16_t fwant,
		     struct open_state *os, struct bpfl **ret, char *err, size_t errlen)
{
	struct bpfl *b = calloc(1, sizeof(*b));
	int r;

	if (!b) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->skel = filter_bpf__open();
	if (!b->skel) {
		r = -errno;
		set_err_libbpf(err, errlen, "open BPF object", r ? r : -EINVAL);
		r = r ? r : -EINVAL;
		goto fail;
	}
	b->skel->rodata->max_frame = max_frame;
	b->skel->rodata->allowed_types = types;
	b->skel->rodata->flags_mask = fmask;
	b->skel->rodata->flags_want = fwant;
	if (os->pinned && (r = reuse_pinned(b->skel, instance, os, err, errlen)) < 0)
		goto fail;
	r = filter_bpf__load(b->skel);
	if (r < 0) {
		set_err_libbpf(err, errlen, "load BPF filters", r);
		goto fail;
	}
	if (os->pinned && (r = pin_new(b->skel, instance, os)) < 0)
		goto fail;
	b->fd[M_DROPS] = bpf_map__fd(b->skel->maps.drops);
	b->fd[M_UDROPS] = bpf_map__fd(b->skel->maps.udrops);
	b->fd[M_BANS] = bpf_map__fd(b->skel->maps.bans);
	/* a reused udrops brings its own size (maybe more reasons than ours) */
	long page = sysconf(_SC_PAGESIZE);
	size_t want = (size_t)bpf_map__max_entries(b->skel->maps.udrops) * sizeof(struct drop_ctr);
	b->ucnt_len = (want + (size_t)page - 1) / (size_t)page * (size_t)page;
	void *p = mmap(NULL, b->ucnt_len, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd[M_UDROPS], 0);
	if (p == MAP_FAILED) {
		r = -errno;
		set_err(err, errlen, "mmap udrops: %s", strerror(-r));
		goto fail;
	}
	b->ucnt = p;
	describe(b, instance, max_frame, types, fmask, fwant, os);
	*ret = b;
	return 0;
fail:
	teardown(b);
	return r;
}

int bpfl_open(const char *instance, uint32_t max_frame, uint32_t allowed_types_mask, uint16_t flags_mask,
	      uint16_t flags_want, struct bpfl **ret, char *err, size_t errlen)
{
	struct open_state os;
	libbpf_print_fn_t prev;
	char path[160];
	int r;

	if (!instance_valid(instance)) {
		set_err(err, errlen, "instance name '%s': want 1..63 bytes without '/'", instance ? instance : "");
		return -EINVAL;
	}
	if (!allowed_types_mask)
		allowed_types_mask = FILTER_TYPES_DEFAULT;
	memset(&os, 0, sizeof(os));
	os.pinned = bpffs_ready(os.unpinned_why, sizeof(os.unpinned_why)) == 0;
	if (os.pinned) {
		snprintf(path, sizeof(path), "%s/%s", BPFL_PIN_ROOT, instance);
		if ((r = mkdir_ok(BPFL_PIN_ROOT)) < 0 || (r = mkdir_ok(path)) < 0) {
			snprintf(os.unpinned_why, sizeof(os.unpinned_why), "mkdir %s: %s", path, strerror(-r));
			os.pinned = 0;
		}
	}
	cap_len = 0;
	cap_buf[0] = 0;
	prev = libbpf_set_print(capture_print);
	for (int i = 0; i < OPEN_TRIES; i++) {
		r = open_once(instance, max_frame, allowed_types_mask, flags_mask, flags_want, &os, ret, err, errlen);
		if (r != -EEXIST)
			break;
		set_err(err, errlen, "pinning under %s/%s raced with another process %d times", BPFL_PIN_ROOT,
			instance, OPEN_TRIES);
	}
	libbpf_set_print(prev);
	return r;
}

void bpfl_close(struct bpfl *b)
{
	libbpf_print_fn_t prev = libbpf_set_print(NULL);
	teardown(b);
	libbpf_set_print(prev);
}

const char *bpfl_describe(const struct bpfl *b)
{
	return b ? b->desc : "";
}

/* ---- attaching ---- */

static int attach_locked(int fd, int opt, const void *val, socklen_t len, const char *what, char *err,
			 size_t errlen)
{
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, opt, val, len) < 0) {
		int r = -errno;
		set_err(err, errlen, "attach %s to socket %d: %s", what, fd, strerror(-r));
		return r;
	}
	/* so that no later code (or injected library) in the process can
	 * detach or replace it; accepted sockets inherit the lock */
	if (setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0) {
		int r = -errno;
		set_err(err, errlen, "lock %s on socket %d: %s", what, fd, strerror(-r));
		return r;
	}
	return 0;
}

int bpfl_attach_udp(struct bpfl *b, int fd, char *err, size_t errlen)
{
	if (!b) {
		set_err(err, errlen, "no eBPF filter loaded (use the classic filter)");
		return -EINVAL;
	}
	int pfd = bpf_program__fd(b->skel->progs.udp_frame);
	return attach_locked(fd, SO_ATTACH_BPF, &pfd, sizeof(pfd), "eBPF filter udp_frame", err, errlen);
}

int bpfl_attach_tcp_listener(struct bpfl *b, int fd, char *err, size_t errlen)
{
	if (!b) {
		set_err(err, errlen, "no eBPF filter loaded");
		return -EINVAL;
	}
	int pfd = bpf_program__fd(b->skel->progs.tcp_listen);
	return attach_locked(fd, SO_ATTACH_BPF, &pfd, sizeof(pfd), "eBPF filter tcp_listen", err, errlen);
}

/* Classic BPF has no table lookups (so no CRC) and only big-endian loads,
 * so the little-endian len is compared byte by byte with the expected
 * value kept in scratch memory M[0].  Offsets count from the UDP header. */
#define CL_DROP 0xFF    /* jump placeholder: patched to the final "ret #0" */
#define CL_UDP FILTER_UDP_HLEN

int bpfl_attach_udp_classic(int fd, uint32_t max_frame, uint32_t allowed_types_mask, uint16_t flags_mask,
			    uint16_t flags_want, char *err, size_t errlen)
{
	if (!allowed_types_mask)
		allowed_types_mask = FILTER_TYPES_DEFAULT;
	struct sock_filter p[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, CL_UDP + FILTER_HDR_LEN, 0, CL_DROP),
		BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, CL_UDP + FILTER_HDR_LEN),
		BPF_STMT(BPF_ST, 0),                                     /* M[0] = expected len */
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, CL_UDP + 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_MAGIC0 << 8 | FILTER_MAGIC1, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 2),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_VERSION, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 3),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 32, CL_DROP, 0),      /* shift below stays defined */
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_IMM, allowed_types_mask),
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_X, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 1),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, CL_DROP, 0),
		/* len byte i == (M[0] >> 8i) & 0xff; ldx has no absolute loads,
		 * so the expected byte goes to X and the packet byte to A */
		BPF_STMT(BPF_LD | BPF_MEM, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xFF),
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 8),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_MEM, 0),
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 8),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xFF),
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 9),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_MEM, 0),
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xFF),
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 10),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_MEM, 0),
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 24),
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, CL_UDP + 11),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, CL_DROP),
		BPF_STMT(BPF_LD | BPF_MEM, 0),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, max_frame, CL_DROP, 0),
		/* a half-word load is big-endian: byte 4 << 8 | byte 5 */
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, CL_UDP + 4),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, bswap_16(flags_mask)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, bswap_16(flags_want), 0, CL_DROP),
		BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFF),                   /* keep the whole datagram */
		BPF_STMT(BPF_RET | BPF_K, 0),                            /* drop */
	};
	unsigned n = sizeof(p) / sizeof(p[0]);

	for (unsigned i = 0; i < n; i++) {
		if (BPF_CLASS(p[i].code) != BPF_JMP)
			continue;
		if (p[i].jt == CL_DROP)
			p[i].jt = (__u8)(n - 1 - i - 1);
		if (p[i].jf == CL_DROP)
			p[i].jf = (__u8)(n - 1 - i - 1);
	}
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = p };
	return attach_locked(fd, SO_ATTACH_FILTER, &prog, sizeof(prog), "classic BPF filter", err, errlen);
}

/* ---- user-space drops and bans ---- */

void bpfl_count(struct bpfl *b, enum drop_reason r, uint32_t bytes)
{
	if (!b || (unsigned)r >= DROP_REASON_MAX)
		return;
	/* relaxed: a counter orders nothing; readers want a recent value */
	__atomic_fetch_add(&b->ucnt[r].packets, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&b->ucnt[r].bytes, bytes, __ATOMIC_RELAXED);
}

int bpfl_ban(struct bpfl *b, const struct in6_addr *a, uint64_t until_ns)
{
	struct ban_key k;
	__u64 v = until_ns;

	if (!b)
		return -EINVAL;
	memcpy(k.addr, a->s6_addr, sizeof(k.addr));
	return bpf_map_update_elem(b->fd[M_BANS], &k, &v, BPF_ANY) < 0 ? -errno : 0;
}

int bpfl_unban(struct bpfl *b, const struct in6_addr *a)
{
	struct ban_key k;

	if (!b)
		return -EINVAL;
	memcpy(k.addr, a->s6_addr, sizeof(k.addr));
	return bpf_map_delete_elem(b->fd[M_BANS], &k) < 0 ? -errno : 0;
}

int bpfl_expire_bans(struct bpfl *b, uint64_t now_ns)
{
	struct ban_key k, next;
	__u64 until;
	int have, n = 0;

	if (!b)
		return -EINVAL;
	have = bpf_map_get_next_key(b->fd[M_BANS], NULL, &k) == 0;
	/* step to the next key before deleting this one: a deleted key would
	 * restart the walk from the first key */
	while (have) {
		have = bpf_map_get_next_key(b->fd[M_BANS], &k, &next) == 0;
		if (bpf_map_lookup_elem(b->fd[M_BANS], &k, &until) == 0 && until <= now_ns &&
		    bpf_map_delete_elem(b->fd[M_BANS], &k) == 0)
			n++;
		k = next;
	}
	return n;
}

/* ---- reading the table ---- */

/* Sums drops over CPUs and adds udrops (from ucnt when mapped, else by
 * lookups on ufd; ufd < 0: kernel part only). */
static int read_table(int dfd, int ufd, const struct drop_ctr *ucnt, struct drop_totals out[DROP_REASON_MAX])
{
	struct drop_totals t[DROP_REASON_MAX];
	int ncpu = libbpf_num_possible_cpus();
	struct drop_ctr *v;
	int r = 0;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(t, 0, sizeof(t));
	for (__u32 k = 0; k < DROP_REASON_MAX; k++) {
		if (bpf_map_lookup_elem(dfd, &k, v) < 0) {
			r = -errno;
			goto cleanup;
		}
		for (int c = 0; c < ncpu; c++) {
			t[k].packets += v[c].packets;
			t[k].bytes += v[c].bytes;
		}
		if (ucnt) {
			t[k].packets += __atomic_load_n(&ucnt[k].packets, __ATOMIC_RELAXED);
			t[k].bytes += __atomic_load_n(&ucnt[k].bytes, __ATOMIC_RELAXED);
		} else if (ufd >= 0) {
			struct drop_ctr u;
			if (bpf_map_lookup_elem(ufd, &k, &u) < 0) {
				r = -errno;
				goto cleanup;
			}
			t[k].packets += u.packets;
			t[k].bytes += u.bytes;
		}
	}
	memcpy(out, t, sizeof(t));
cleanup:
	free(v);
	return r;
}

int bpfl_read_drops(struct bpfl *b, struct drop_totals out[DROP_REASON_MAX])
{
	if (!b)
		return -EINVAL;
	return read_table(b->fd[M_DROPS], -1, b->ucnt, out);
}

int bpfl_read_pinned(const char *instance, struct drop_totals out[DROP_REASON_MAX], char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_obj_get_opts, ro, .file_flags = BPF_F_RDONLY);
	char path[160];
	int dfd = -1, ufd = -1, r;

	if (!instance_valid(instance)) {
		set_err(err, errlen, "instance name '%s': want 1..63 bytes without '/'", instance ? instance : "");
		return -EINVAL;
	}
	pin_path(path, sizeof(path), instance, "drops");
	dfd = bpf_obj_get_opts(path, &ro);
	if (dfd < 0) {
		r = -errno;
		if (r == -ENOENT)
			set_err(err, errlen, "%s does not exist: no eBPF filter has run for instance '%s' "
				"(or its maps are not pinned)", path, instance);
		else
			set_err(err, errlen, "open %s: %s", path, strerror(-r));
		goto cleanup;
	}
	pin_path(path, sizeof(path), instance, "udrops");
	ufd = bpf_obj_get_opts(path, &ro);
	if (ufd < 0 && errno != ENOENT) {
		r = -errno;
		set_err(err, errlen, "open %s: %s", path, strerror(-r));
		goto cleanup;
	}
	/* a table pinned by another build could be laid out differently */
	struct bpf_map_info info;
	__u32 ilen = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(dfd, &info, &ilen) < 0 || info.type != BPF_MAP_TYPE_PERCPU_ARRAY ||
	    info.value_size != sizeof(struct drop_ctr) || info.max_entries < DROP_REASON_MAX) {
		r = -EPROTO;
		set_err(err, errlen, "%s/%s/drops: not a drop table of this build", BPFL_PIN_ROOT, instance);
		goto cleanup;
	}
	r = read_table(dfd, ufd, NULL, out);
	if (r < 0)
		set_err(err, errlen, "read %s/%s: %s", BPFL_PIN_ROOT, instance, strerror(-r));
cleanup:
	if (dfd >= 0)
		close(dfd);
	if (ufd >= 0)
		close(ufd);
	return r;
}

int bpfl_socket_drops(int fd, uint32_t *ret)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0)
		return -errno;
	if (len <= SK_MEMINFO_DROPS * sizeof(uint32_t))
		return -EPROTO;
	*ret = mem[SK_MEMINFO_DROPS];
	return 0;
}

const char *bpfl_reason_name(enum drop_reason r)
{
	static const char *const names[DROP_REASON_MAX] = {
		[DROP_SHORT] = "short",
		[DROP_BAD_MAGIC] = "bad_magic",
		[DROP_BAD_VERSION] = "bad_version",
		[DROP_BAD_TYPE] = "bad_type",
		[DROP_BAD_LENGTH] = "bad_length",
		[DROP_BAD_HCRC] = "bad_hcrc",
		[DROP_TOO_LARGE] = "too_large",
		[DROP_BANNED] = "banned",
		[DROP_BAD_PCRC] = "bad_pcrc",
		[DROP_FRAMING] = "framing",
		[DROP_REPLAY] = "replay",
		[DROP_BAD_MAC] = "bad_mac",
		[DROP_RING_FULL] = "ring_full",
		[DROP_MALFORMED] = "malformed",
		[DROP_AUTH] = "auth",
		[DROP_TOPIC] = "topic",
	};

	if ((unsigned)r >= DROP_REASON_MAX || !names[r])
		return "?";
	return names[r];
}
