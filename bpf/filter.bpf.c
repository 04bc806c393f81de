/* filter.bpf — the socket filters of ingestd (see filter.h for the maps).
 *
 * udp_frame   on every UDP ingest socket (SO_ATTACH_BPF): drops a datagram
 *             that is not exactly one well-formed frame of an allowed type
 *             (and, in keys mode, with the MAC flag), before it costs a
 *             wake-up or a copy.
 * tcp_listen  on the TCP listening socket: drops connection attempts (SYN
 *             without ACK) from banned sources.  Accepted sockets inherit
 *             it, so it runs on every TCP segment and must stay cheap.
 *
 * What a socket filter sees (measured on 6.18 with a probe filter that
 * recorded skb->len and the first bytes, on IPv4 and IPv6, UDP sockets, a
 * TCP listener and the sockets accepted from it; tests/unit/test_bpf.c
 * depends on it): skb->data starts at the transport header — the UDP
 * header for UDP (the frame at byte 8, skb->len = 8 + payload), the TCP
 * header for TCP (skb->len = TCP header + payload).  The IP header lies
 * before skb->data; bpf_skb_load_bytes_relative(BPF_HDR_START_NET) reaches
 * it.  skb->protocol tells IPv4 from IPv6 (a dual-stack socket receives
 * IPv4 packets as IPv4).  Direct packet access is not allowed in socket
 * filters, hence the load helpers.  The listener runs the filter for the
 * SYN and for the handshake's final ACK; the accepted socket for the rest.
 *
 * Return value: 0 drops; anything else is the number of bytes to keep, so
 * passing returns skb->len (a smaller value would trim the datagram).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "filter.h"
#include "crc_table.h"

/* Tunables, set by the loader before load (frozen afterwards, so the
 * verifier knows them). */
const volatile __u32 max_frame = FILTER_MAX_FRAME_DEFAULT;
const volatile __u32 allowed_types = FILTER_TYPES_DEFAULT;  /* bit t: type t passes (t < 32) */
/* flags & flags_mask must equal flags_want (keys mode: MAC set, sealed
 * clear); 0 and 0 pass any flags */
const volatile __u32 flags_mask = 0;
const volatile __u32 flags_want = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct drop_ctr);
} drops SEC(".maps");

/* Not used by the programs: created with them so that one object defines
 * the whole table and user space finds it next to drops. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct drop_ctr);
} udrops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, FILTER_BANS_MAX);
	__type(key, struct ban_key);
	__type(value, __u64);
} bans SEC(".maps");

/* Counts a drop and returns the drop verdict.  Atomic adds although the
 * slot is per-CPU: a filter may be preempted by another on the same CPU
 * (process-context receive, PREEMPT_RT), and drops are not the hot path. */
static __always_inline int drop(enum drop_reason r, __u32 bytes)
{
	__u32 k = r;
	struct drop_ctr *c = bpf_map_lookup_elem(&drops, &k);

	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, bytes);
	}
	return 0;
}

static __always_inline __u32 le32(const __u8 *p)
{
	return (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

SEC("socket")
int udp_frame(struct __sk_buff *skb)
{
	__u8 h[FILTER_HDR_LEN];
	__u32 len = skb->len;
	__u32 dlen, crc, flen;

	/* a socket with UDP_GRO gets coalesced datagrams as one skb (gso_segs
	 * of gso_size bytes each): judging it as one frame would drop every
	 * datagram in it, so it passes, and user space checks each one */
	if (skb->gso_segs > 1)
		return len;
	if (len < FILTER_UDP_HLEN + FILTER_HDR_LEN)
		return drop(DROP_SHORT, len > FILTER_UDP_HLEN ? len - FILTER_UDP_HLEN : 0);
	dlen = len - FILTER_UDP_HLEN;
	/* one copy of the header to the stack: every check reads it */
	if (bpf_skb_load_bytes(skb, FILTER_UDP_HLEN, h, sizeof(h)) < 0)
		return drop(DROP_SHORT, dlen);
	if (h[0] != FILTER_MAGIC0 || h[1] != FILTER_MAGIC1)
		return drop(DROP_BAD_MAGIC, dlen);
	if (h[2] != FILTER_VERSION)
		return drop(DROP_BAD_VERSION, dlen);
	/* the CRC before type and len: without it those fields mean nothing,
	 * and the reason counted should say what is wrong first */
	crc = 0xFFFFFFFF;
#pragma clang loop unroll(full)
	for (int i = 0; i < 32; i += 4) {
		/* slicing by 4 (crc_table.h): four independent loads a step */
		crc ^= le32(h + i);
		crc = crc_table[3][crc & 0xFF] ^ crc_table[2][(crc >> 8) & 0xFF] ^
		      crc_table[1][(crc >> 16) & 0xFF] ^ crc_table[0][crc >> 24];
	}
	if ((crc ^ 0xFFFFFFFF) != le32(h + 32))
		return drop(DROP_BAD_HCRC, dlen);
	if (h[3] >= 32 || !(allowed_types & (1u << h[3])))
		return drop(DROP_BAD_TYPE, dlen);
	flen = le32(h + 8);
	if (flen != dlen - FILTER_HDR_LEN)
		return drop(DROP_BAD_LENGTH, dlen);
	if (flen > max_frame)
		return drop(DROP_TOO_LARGE, dlen);
	if ((((__u32)h[4] | (__u32)h[5] << 8) & flags_mask) != flags_want)
		return drop(DROP_AUTH, dlen);
	return len;
}

/* Legacy LD_ABS byte load: the kernel inlines its fast path (a linear
 * byte), ~15 ns cheaper per segment than bpf_skb_load_bytes here.  It
 * ends the program with 0 (drop) when the offset is outside the packet,
 * which cannot happen at byte 13: TCP pulls its whole header (>= 20
 * bytes) into the linear area before it runs the socket filter. */
unsigned long long ld_abs_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");

SEC("socket")
int tcp_listen(struct __sk_buff *skb)
{
	struct ban_key k = {};
	__u8 flags;
	__u64 *until;

	/* every segment of every accepted connection comes here: decide on
	 * the flags byte alone unless it is a connection attempt */
	flags = (__u8)ld_abs_byte(skb, 13);
	if ((flags & (FILTER_TH_SYN | FILTER_TH_ACK)) != FILTER_TH_SYN)
		return skb->len;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		k.addr[10] = 0xFF;
		k.addr[11] = 0xFF;
		if (bpf_skb_load_bytes_relative(skb, 12, &k.addr[12], 4, BPF_HDR_START_NET) < 0)
			return skb->len;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(skb, 8, k.addr, 16, BPF_HDR_START_NET) < 0)
			return skb->len;
	} else {
		return skb->len;
	}
	until = bpf_map_lookup_elem(&bans, &k);
	if (until && *until > bpf_ktime_get_ns())
		return drop(DROP_BANNED, skb->len);
	return skb->len;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
