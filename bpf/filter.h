/* filter — what the kernel filters (filter.bpf.c) and user space (loader.c,
 * ingestd, ingest-stats) share: the drop reasons, the counter layout and
 * the ban key.  Fixed-width __u* types only, so both sides see one layout.
 *
 * Maps, pinned under /sys/fs/bpf/module-ingest/<instance>/:
 *
 *   drops   BPF_MAP_TYPE_PERCPU_ARRAY, key __u32 (enum drop_reason),
 *           value struct drop_ctr per CPU.  Written only by the filters.
 *   udrops  BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE, key __u32 (enum
 *           drop_reason), value struct drop_ctr.  Written only by user
 *           space (ingestd mmaps it and adds with __atomic), for the drops
 *           it detects itself.  Kept apart from drops because a per-CPU map
 *           cannot be mmap'd, and user space must count without a syscall.
 *   bans    BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, key struct ban_key,
 *           value __u64 = expiry in the bpf_ktime_get_ns() clock
 *           (CLOCK_MONOTONIC ns); UINT64_MAX bans for good.  An entry at or
 *           past its expiry is ignored by the filter and deleted by user
 *           space (bpfl_expire_bans).
 *
 * The total for a reason is the sum of drops over every CPU plus udrops.
 * Counters are never reset; they survive restarts because a restarted
 * process reuses the pinned maps.
 */
#ifndef MI_BPF_FILTER_H
#define MI_BPF_FILTER_H
#include <linux/types.h>

/* Why a frame, datagram or connection attempt was dropped.  Append only:
 * the numbers are map keys in pinned maps and in dumps read by operators.
 *
 *   bytes counted: UDP = the datagram's payload (UDP header excluded);
 *   TCP SYN = the segment from its TCP header on; user space = the bytes
 *   of the frame (header + payload) or of the input it threw away.
 */
enum drop_reason {
	DROP_SHORT = 0,        /* UDP: datagram shorter than the 36-byte frame header */
	DROP_BAD_MAGIC = 1,    /* bytes 0-1 are not "MI" */
	DROP_BAD_VERSION = 2,  /* byte 2 is not 1 */
	DROP_BAD_TYPE = 3,     /* UDP: type not in the allowed set (DATA only by default) */
	DROP_BAD_LENGTH = 4,   /* UDP: len != datagram length - 36 (one frame per datagram) */
	DROP_BAD_HCRC = 5,     /* header CRC-32 of bytes 0..31 != hcrc */
	DROP_TOO_LARGE = 6,    /* len above the configured max frame */
	DROP_BANNED = 7,       /* TCP: SYN from a source in the bans map */
	DROP_BAD_PCRC = 8,     /* user space: payload CRC-32 mismatch */
	DROP_FRAMING = 9,      /* user space, TCP: framing error, connection closed */
	DROP_REPLAY = 10,      /* user space, UDP: seq outside or already in the replay window */
	DROP_BAD_MAC = 11,     /* user space: MAC does not verify */
	DROP_RING_FULL = 12,   /* user space, UDP: no ring space for the record */
	DROP_MALFORMED = 13,   /* user space: payload structure invalid (device id, fields) */
	DROP_AUTH = 14,        /* UDP: unknown or refused device (user space); in keys
				* mode flags without the MAC bit or with the sealed bit */
	DROP_TOPIC = 15,       /* user space: topic not allowed for the device */
	DROP_REASON_MAX
};

struct drop_ctr {
	__u64 packets;
	__u64 bytes;
};

/* A source address: IPv6, or IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d), in
 * network byte order, the form ingestd keeps peers in. */
struct ban_key {
	__u8 addr[16];
};

#define FILTER_BANS_MAX 65536u         /* bans map capacity */

/* Mirrors of common/frame.h (which the BPF side cannot include);
 * loader.c checks they agree. */
#define FILTER_UDP_HLEN 8              /* a UDP socket filter sees the UDP header first */
#define FILTER_HDR_LEN 36
#define FILTER_MAGIC0 0x4D
#define FILTER_MAGIC1 0x49
#define FILTER_VERSION 1
#define FILTER_TYPE_DATA 5
#define FILTER_MAX_FRAME_DEFAULT (64u << 10)
#define FILTER_TYPES_DEFAULT (1u << FILTER_TYPE_DATA)
#define FILTER_F_MAC (1u << 1)
#define FILTER_F_SEALED (1u << 2)

/* Byte 13 of the TCP header. */
#define FILTER_TH_SYN 0x02
#define FILTER_TH_ACK 0x10
#endif
