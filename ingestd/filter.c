/* filter — the kernel filters (bpf/loader.h) as ingestd uses them: set up
 * once at start-up in the best mode this process may have, user-space drops
 * counted in the same table, and bans for sources that keep failing.
 *
 * A source is banned after [filter] ban_after failed handshakes or framing
 * violations within ban_window_ms, for ban_ms: its SYNs are then dropped by
 * the listener's eBPF filter (counted as banned), or, without eBPF, its
 * connections closed at accept.  Failures are tracked in a small open-
 * addressing table that forgets old entries, so a flood of distinct
 * sources costs bounded memory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"

#define FAIL_SLOTS 4096   /* power of two */

struct fail_ent {
	struct in6_addr addr;
	uint64_t window_start_ms;
	uint64_t banned_until_ms;   /* user-space view, for the accept check */
	uint32_t count;
	uint8_t used;
	uint8_t in_kernel;          /* the listener filter drops its SYNs */
};

static struct fail_ent fails[FAIL_SLOTS];

static const char *mode_name(int m)
{
	static const char *const n[] = { "user space only", "classic BPF on UDP", "eBPF" };
	return n[m];
}

void filter_setup(struct worker *w)
{
	char err[512];
	const char *mode = w->s->filter_mode;
	/* keys mode: a UDP datagram without the MAC flag, or sealed, cannot
	 * pass user space either (udp.c): drop it in the kernel */
	uint16_t fmask = w->keys_mode ? MI_F_MAC | MI_F_SEALED : 0, fwant = w->keys_mode ? MI_F_MAC : 0;
	w->filter_mode = FILTER_MODE_USER;
	if (!strcmp(mode, "off")) {
		log_info("filters: off ([filter] mode); ingestd checks every frame itself");
		return;
	}
	if (strcmp(mode, "classic")) {
		int r = bpfl_open(w->s->instance, (uint32_t)w->s->max_frame, 0, fmask, fwant, &w->bpf, err, sizeof(err));
		int udp_ok = r == 0 && (w->udp_fd < 0 || bpfl_attach_udp(w->bpf, w->udp_fd, err, sizeof(err)) == 0);
		if (r == 0 && !udp_ok)
			log_warn("filters: UDP eBPF attach: %s", err);
		if (udp_ok) {
			/* a locked eBPF filter cannot be swapped for classic: keep it,
			 * and enforce bans at accept if the listener has none */
			w->filter_mode = FILTER_MODE_EBPF;
			w->tcp_filtered = bpfl_attach_tcp_listener(w->bpf, w->lfd, err, sizeof(err)) == 0;
			if (!w->tcp_filtered)
				log_warn("filters: TCP listener eBPF attach: %s (bans enforced at accept)", err);
			log_info("filters: eBPF (%s)", bpfl_describe(w->bpf));
			return;
		}
		if (w->bpf) {
			bpfl_close(w->bpf);
			w->bpf = NULL;
		}
		if (!strcmp(mode, "ebpf"))
			log_warn("filters: eBPF unavailable ([filter] mode = ebpf): %s", err);
		else
			log_info("filters: eBPF unavailable (%s); falling back", err);
	}
	if (w->udp_fd >= 0 &&
	    bpfl_attach_udp_classic(w->udp_fd, (uint32_t)w->s->max_frame, 0, fmask, fwant, err, sizeof(err)) == 0)
		w->filter_mode = FILTER_MODE_CLASSIC;
	else if (w->udp_fd >= 0)
		log_warn("filters: classic BPF on UDP: %s", err);
	log_info("filters: %s (drops are counted in ingest-stats only by total)", mode_name(w->filter_mode));
}

void filter_close(struct worker *w)
{
	bpfl_close(w->bpf);
	w->bpf = NULL;
}

static struct fail_ent *lookup(const struct in6_addr *a, int create, uint64_t now_ms, uint64_t window_ms)
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ a->s6_addr[i]) * 16777619u;
	struct fail_ent *victim = NULL;
	for (uint32_t n = 0; n < 16; n++) {
		struct fail_ent *e = &fails[(h + n) & (FAIL_SLOTS - 1)];
		if (e->used && !memcmp(&e->addr, a, sizeof(*a)))
			return e;
		/* a free slot, or one whose window and ban are both over */
		if (!victim && (!e->used || (now_ms - e->window_start_ms > window_ms && e->banned_until_ms <= now_ms)))
			victim = e;
	}
	if (!create)
		return NULL;
	if (!victim)   /* crowded: take over the home slot */
		victim = &fails[h & (FAIL_SLOTS - 1)];
	memset(victim, 0, sizeof(*victim));
	victim->addr = *a;
	victim->used = 1;
	victim->window_start_ms = now_ms;
	return victim;
}

void filter_failure(struct worker *w, const struct in6_addr *a)
{
	if (w->s->ban_ms <= 0)
		return;
	uint64_t now = w->now_ms, win = (uint64_t)w->s->ban_window_ms;
	struct fail_ent *e = lookup(a, 1, now, win);
	if (now - e->window_start_ms > win) {
		e->window_start_ms = now;
		e->count = 0;
	}
	if (++e->count < (uint32_t)w->s->ban_after || e->banned_until_ms > now)
		return;
	e->banned_until_ms = now + (uint64_t)w->s->ban_ms;
	e->count = 0;
	shm_count(&w->ctr[IC_BANS], 1);
	char ip[64];
	struct conn tmp = { .peer = { .sin6_family = AF_INET6, .sin6_addr = *a } };
	conn_peer(&tmp, ip, sizeof(ip));
	ip[strlen(ip) - 2] = 0;   /* ":0" */
	e->in_kernel = 0;
	if (w->bpf && w->tcp_filtered) {
		/* the kernel's clock: CLOCK_MONOTONIC, as bpf_ktime_get_ns */
		int r = bpfl_ban(w->bpf, a, clock_mono_ns() + (uint64_t)w->s->ban_ms * 1000000ull);
		if (r < 0)   /* e.g. EPERM after dropping to [server] user */
			log_warn("ban %s in the kernel: %s (closed at accept instead)", ip, strerror(-r));
		e->in_kernel = r == 0;
	}
	log_warn("%s banned for %lld ms after %lld failed handshakes or framing errors within %lld ms", ip,
		 (long long)w->s->ban_ms, (long long)w->s->ban_after, (long long)w->s->ban_window_ms);
}

int filter_banned(struct worker *w, const struct in6_addr *a)
{
	struct fail_ent *e = lookup(a, 0, w->now_ms, (uint64_t)w->s->ban_window_ms);
	/* a ban the kernel holds is the kernel's to lift (bpftool map delete) */
	return e && e->banned_until_ms > w->now_ms && !e->in_kernel;
}

void filter_tick(struct worker *w)
{
	if (w->bpf)
		bpfl_expire_bans(w->bpf, clock_mono_ns());
}
