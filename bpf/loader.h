/* bpfl — loads the socket filters of bpf/filter.bpf.c, pins their maps, and
 * gives user space its half of the one drop table (see bpf/filter.h).
 *
 * Modes, best first; the caller logs which one it got, once:
 *
 *   1. eBPF, pinned:    bpfl_open succeeds, maps live under
 *                       /sys/fs/bpf/module-ingest/<instance>/ and survive
 *                       restarts (a new bpfl_open reuses them).
 *   2. eBPF, unpinned:  bpffs absent and not mountable; counters live as long
 *                       as the process; bpfl_describe names the map ids for
 *                       `bpftool map dump id N`.
 *   3. classic BPF:     bpfl_open failed (no CAP_BPF/CAP_PERFMON, verifier,
 *                       old kernel): the caller passes b = NULL around and
 *                       attaches bpfl_attach_udp_classic.  Works unprivileged;
 *                       no per-reason counts (the socket's own drop counter,
 *                       bpfl_socket_drops, holds the total).
 *   4. user space only: the classic attach failed too; ingestd checks
 *                       every frame itself, as it must anyway.
 *
 * Every function returns 0 (or a count) or a negative errno, and writes a
 * reason into err when it takes one; none logs or aborts.  Functions taking
 * struct bpfl * accept NULL where noted, so the fallback path needs no
 * special cases.  bpfl_open and bpfl_close are not thread-safe (libbpf's
 * print hook is process-global): call them at start-up and shutdown.  The
 * rest is safe from any thread.
 */
#ifndef MI_BPF_LOADER_H
#define MI_BPF_LOADER_H
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "bpf/filter.h"

#define BPFL_PIN_ROOT "/sys/fs/bpf/module-ingest"

struct bpfl;

/* One reason's total: kernel drops summed over CPUs, plus user space's. */
struct drop_totals {
	uint64_t packets;
	uint64_t bytes;
};

/* Loads the filters with the given tunables (max_frame: largest payload
 * passed; allowed_types_mask: bit t lets frame type t through, 0 means
 * FILTER_TYPES_DEFAULT = DATA only; a UDP frame passes only if its flags &
 * flags_mask == flags_want, dropped as DROP_AUTH otherwise: keys mode
 * passes FILTER_F_MAC | FILTER_F_SEALED and FILTER_F_MAC, open mode 0 and
 * 0), reusing the instance's pinned maps or
 * creating and pinning them.  instance: 1..63 bytes, no '/', not "." or "..".
 * On failure *ret is untouched and err says why (the libbpf or verifier
 * text); the caller then falls back to classic BPF. */
int bpfl_open(const char *instance, uint32_t max_frame, uint32_t allowed_types_mask, uint16_t flags_mask,
	      uint16_t flags_want, struct bpfl **ret, char *err, size_t errlen);

/* Never unpins: counters and bans outlive the process.  Accepts NULL.
 * Filters already attached stay attached (sockets hold the programs). */
void bpfl_close(struct bpfl *b);

/* One line for the log: the mode, the pin directory or the map ids, and
 * which maps were reused or replaced.  "" for NULL. */
const char *bpfl_describe(const struct bpfl *b);

/* Attaches udp_frame to a UDP socket (SO_ATTACH_BPF), then locks the
 * filter (SO_LOCK_FILTER) so nothing in the process can remove it.  b must
 * not be NULL; without a loaded filter use bpfl_attach_udp_classic.
 * With UDP_GRO on the socket, a coalesced batch (several datagrams in one
 * skb) passes unchecked: user space must check each frame, as always. */
int bpfl_attach_udp(struct bpfl *b, int fd, char *err, size_t errlen);

/* Classic BPF for a UDP socket (SO_ATTACH_FILTER, unprivileged), then
 * SO_LOCK_FILTER.  Checks: datagram holds a header, magic, version, type in
 * allowed_types_mask (0 = DATA only), len == datagram length - 36, len <=
 * max_frame, flags & flags_mask == flags_want (as for bpfl_open).  Not the
 * header CRC (classic BPF has no table lookups).
 * Do not combine with UDP_GRO: classic BPF cannot tell a coalesced batch
 * from one datagram, so it would drop whole batches as bad lengths. */
int bpfl_attach_udp_classic(int fd, uint32_t max_frame, uint32_t allowed_types_mask, uint16_t flags_mask,
			    uint16_t flags_want, char *err, size_t errlen);

/* Attaches tcp_listen to a listening TCP socket, then SO_LOCK_FILTER.
 * Sockets accepted from it inherit the (locked) filter.  b must not be
 * NULL (there is no classic fallback: bans are then enforced at accept). */
int bpfl_attach_tcp_listener(struct bpfl *b, int fd, char *err, size_t errlen);

/* Counts a drop detected in user space: two relaxed atomic adds on the
 * mmap'd udrops array, no syscall.  No-op for b == NULL or r out of range. */
void bpfl_count(struct bpfl *b, enum drop_reason r, uint32_t bytes);

/* Bans a source (IPv6, or IPv4 as ::ffff:a.b.c.d) until until_ns in the
 * CLOCK_MONOTONIC clock (bpf_ktime_get_ns; UINT64_MAX: no expiry); a new
 * ban replaces an older one.  -E2BIG when FILTER_BANS_MAX are held. */
int bpfl_ban(struct bpfl *b, const struct in6_addr *a, uint64_t until_ns);
/* Returns 0, or -ENOENT when a was not banned. */
int bpfl_unban(struct bpfl *b, const struct in6_addr *a);
/* Deletes every ban whose expiry is at or before now_ns (CLOCK_MONOTONIC).
 * Returns how many it deleted, or a negative errno. */
int bpfl_expire_bans(struct bpfl *b, uint64_t now_ns);

/* Sums the drop table: out[r] for every r < DROP_REASON_MAX. */
int bpfl_read_drops(struct bpfl *b, struct drop_totals out[DROP_REASON_MAX]);
/* The same from the pinned maps of an instance, for a process that did
 * not load anything (ingest-stats).  -ENOENT with a reason in err when the
 * instance has no pinned maps. */
int bpfl_read_pinned(const char *instance, struct drop_totals out[DROP_REASON_MAX], char *err,
		     size_t errlen);

/* The socket's kernel drop count (SO_MEMINFO SK_MEMINFO_DROPS): every
 * datagram a filter (eBPF or classic) refused, plus receive-buffer
 * overflows.  The only total classic mode has. */
int bpfl_socket_drops(int fd, uint32_t *ret);

/* Short snake_case name ("bad_hcrc"), for tables and JSON keys; "?" when
 * out of range. */
const char *bpfl_reason_name(enum drop_reason r);
#endif
