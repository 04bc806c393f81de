/* mi-fsync-probe — the disk's own fdatasync latency, the floor under any
 * ACK latency: appends SIZE bytes and fdatasyncs, N times, in DIR. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mi-fsync-probe DIR [COUNT [SIZE]]\n"
		   "Appends SIZE bytes (default 4096) and fdatasyncs, COUNT times (default 2000),\n"
		   "in a scratch file under DIR; prints fdatasync p50/p99/p99.9/max as JSON.\n"
		   "Exit status: 0 measured, 1 the file could not be written, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (o == 'h') {
			usage(stdout);
			return 0;
		}
		cli_bad_option("mi-fsync-probe", o, argv);
		usage(stderr);
		return CLI_EX_USAGE;
	}
	argc -= optind - 1;   /* argv[1] is DIR from here on */
	argv += optind - 1;
	if (argc < 2 || argc > 4) {
		usage(stderr);
		return CLI_EX_USAGE;
	}
	int n = argc > 2 ? atoi(argv[2]) : 2000;
	size_t size = argc > 3 ? (size_t)atol(argv[3]) : 4096;
	if (n < 10 || size < 1 || size > (64u << 20)) {
		fprintf(stderr, "mi-fsync-probe: COUNT must be >= 10 and SIZE 1..64M\n");
		return CLI_EX_USAGE;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/.fsync-probe.%d", argv[1], (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "mi-fsync-probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char *buf = calloc(1, size);
	uint64_t *lat = calloc((size_t)n, sizeof(*lat));
	if (!buf || !lat)
		return 1;
	for (int i = 0; i < n; i++) {
		if (write(fd, buf, size) != (ssize_t)size) {
			fprintf(stderr, "mi-fsync-probe: write %s: %s\n", path, strerror(errno));
			unlink(path);
			return 1;
		}
		uint64_t t0 = clock_mono_ns();
		if (fdatasync(fd) < 0) {
			fprintf(stderr, "mi-fsync-probe: fdatasync %s: %s\n", path, strerror(errno));
			unlink(path);
			return 1;
		}
		lat[i] = clock_mono_ns() - t0;
	}
	close(fd);
	unlink(path);
	qsort(lat, (size_t)n, sizeof(*lat), cmp);
	printf("{\"count\":%d,\"size\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n", n,
	       size, lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3, lat[n * 999 / 1000] / 1e3, lat[n - 1] / 1e3);
	free(buf);
	free(lat);
	return 0;
}
