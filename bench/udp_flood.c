/* mi-udp-flood — UDP DATA datagrams at ingestd, a share of them malformed.
 *
 *   mi-udp-flood -p PORT -d SECONDS -b BAD_SHARE [-n DEVICES]
 *
 * sendmmsg in batches of 64, as fast as one core allows, to 127.0.0.1:PORT:
 * good frames (device ids flood-0.., increasing seqs, 100-byte data) and,
 * BAD_SHARE of the time, malformed ones (bad header CRC and bad magic, in
 * turn).  Prints one JSON line: sent, good, bad, per_s.  bench/filter uses
 * it to compare ingestd's CPU per good frame with and without the kernel
 * filter. */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/frame.h"

#define BATCH 64
#define DLEN 100

static void usage(FILE *f)
{
	fprintf(f, "usage: mi-udp-flood [-p PORT] [-d SECONDS] [-b BAD_SHARE] [-n DEVICES]\n"
		   "\n"
		   "Sends UDP DATA datagrams to 127.0.0.1:PORT (default 7400) for SECONDS\n"
		   "(default 5), as fast as one core allows, from DEVICES devices (default 16,\n"
		   "1..1000); BAD_SHARE of them (default 0.5, 0..1) malformed.  Prints one JSON\n"
		   "line: sent, good, bad, per_s.  Exit status: 0 sent, 1 no socket, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int port = 7400, o, ndev = 16;
	double secs = 5, bad_share = 0.5;
	while ((o = getopt_long(argc, argv, ":p:d:b:n:h", opts, NULL)) != -1) {
		switch (o) {
		case 'p': port = atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'b': bad_share = atof(optarg); break;
		case 'n': ndev = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default:
			cli_bad_option("mi-udp-flood", o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	if (ndev < 1 || ndev > 1000 || bad_share < 0 || bad_share > 1) {
		fprintf(stderr, "mi-udp-flood: -n 1..1000, -b 0..1\n");
		return CLI_EX_USAGE;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		perror("mi-udp-flood: socket");
		return 1;
	}
	static uint8_t buf[BATCH][MI_HDR_LEN + 1 + 16 + DLEN];
	struct iovec iov[BATCH];
	struct mmsghdr msg[BATCH];
	uint64_t *seqs = calloc((size_t)ndev, sizeof(*seqs));
	uint64_t sent = 0, good = 0, bad = 0;
	double acc = 0;
	uint64_t end = clock_mono_ns() + (uint64_t)(secs * 1e9);
	while (clock_mono_ns() < end) {
		for (int i = 0; i < BATCH; i++) {
			uint8_t pl[1 + 16 + DLEN];
			int dev = (int)(sent + (uint64_t)i) % ndev;
			int idl = snprintf((char *)pl + 1, 17, "flood-%d", dev);
			pl[0] = (uint8_t)idl;
			memset(pl + 1 + idl, 'x', DLEN);
			uint32_t plen = (uint32_t)(1 + idl + DLEN);
			acc += bad_share;
			int is_bad = acc >= 1.0;
			if (is_bad)
				acc -= 1.0;
			size_t n = mi_frame_build(buf[i], sizeof(buf[i]), MI_DATA, 0, 0, is_bad ? 1 : ++seqs[dev], 0, pl, plen);
			if (is_bad) {
				if (bad & 1)
					buf[i][0] = 'X';
				else
					buf[i][32] ^= 1;
				bad++;
			} else {
				good++;
			}
			iov[i] = (struct iovec){ buf[i], n };
			msg[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int r = sendmmsg(fd, msg, BATCH, 0);
		if (r > 0)
			sent += (uint64_t)r;
	}
	printf("{\"sent\":%llu,\"good\":%llu,\"bad\":%llu,\"per_s\":%.0f}\n", (unsigned long long)sent,
	       (unsigned long long)good, (unsigned long long)bad, (double)sent / secs);
	free(seqs);
	close(fd);
	return 0;
}
