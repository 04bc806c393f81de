/* mi-send — send stdin lines or generated frames as one device, exit 0 only
 * when every frame is acknowledged durable.  Integration tests run it while
 * killing server stages, so it keeps reconnecting and resending for up to
 * --timeout seconds without progress.  --until-stopped is the load a test
 * keeps running while it acts: generated frames until SIGTERM/SIGINT, so no
 * test has to guess how long a fixed count lasts on its machine. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/mi_client.h"
#include "common/cli.h"

enum {
	EX_ACKED = 0,
	EX_CONN = 1,
	EX_USAGE = CLI_EX_USAGE,   /* 2, as for every program */
	EX_NACKED = 3,
	EX_INPUT = 4,
};

static const char usage[] =
	"usage: mi-send [-h HOST] [-p PORT] -d DEVICE [-t TOPIC]\n"
	"               [--count N | --until-stopped [--rate FPS]] [--size BYTES]\n"
	"               [--window N] [--start-seq S] [--timeout SEC] [--quiet]\n"
	"               [--key BASE64 | --key-file FILE] [--fingerprint HEX] [--mac | --seal]\n"
	"\n"
	"Sends DATA frames as device DEVICE to HOST:PORT (default 127.0.0.1:7400)\n"
	"and waits until every one is acknowledged.\n"
	"\n"
	"  -h, --host HOST     server host (default 127.0.0.1)\n"
	"  -p, --port PORT     server port (default 7400)\n"
	"  -d, --device ID     device id: 1..64 bytes of [A-Za-z0-9._:-]\n"
	"  -t, --topic N       topic id for every frame (default 0)\n"
	"      --count N       send N generated frames instead of stdin lines\n"
	"      --until-stopped send generated frames (as --count) until SIGTERM or\n"
	"                      SIGINT, then stop sending, wait for every frame's\n"
	"                      ACK and exit as --count does (0: all acknowledged)\n"
	"      --rate FPS      with --until-stopped: at most FPS frames per second\n"
	"                      (default: as fast as the server acknowledges)\n"
	"      --size BYTES    payload size of generated frames (default 100)\n"
	"      --window N      frames in flight before waiting for ACKs (default 4096)\n"
	"      --start-seq S   lowest first seq (default: server's last seq + 1)\n"
	"      --timeout SEC   give up after SEC seconds without an ACK (default 60)\n"
	"      --key BASE64   the device key (keys mode): 32 bytes in base64, as\n"
	"                      mi-keys add/rotate prints it; visible in ps, so prefer:\n"
	"      --key-file FILE the same, from the first line of FILE\n"
	"      --fingerprint HEX  32-byte hardware fingerprint sent in HELLO (64 hex)\n"
	"      --mac           end every frame with the per-frame MAC (flags bit 1,\n"
	"                      keyed with the session key); needs --key or --key-file\n"
	"      --seal          send every payload sealed: encrypted and authenticated\n"
	"                      with XChaCha20-Poly1305 under the session key (flags\n"
	"                      bit 2; adds a 16-byte tag); needs --key or --key-file;\n"
	"                      not with --mac (the tag authenticates the frame)\n"
	"  -q, --quiet         no summary line\n"
	"      --help          this text\n"
	"\n"
	"Without --count or --until-stopped every stdin line (newline removed) is\n"
	"one frame.  Generated frames (--count, --until-stopped): the payload of\n"
	"seq S is the string \"DEVICE:S;\" repeated and cut to BYTES bytes, so a\n"
	"test can recompute it.  Seqs are consecutive from the server's last\n"
	"durable seq + 1 (or --start-seq if higher).  A summary goes to stderr:\n"
	"sent, acked, resent, nacked, reconnects, seq range, elapsed.\n"
	"\n"
	"--until-stopped is load that runs until told to stop: the summary's seq\n"
	"range A..B names every frame it sent.  After the signal it waits for the\n"
	"ACKs as --count does, giving up after --timeout seconds without one; a\n"
	"second signal ends it at once.\n"
	"\n"
	"exit status:\n"
	"  0  every frame acknowledged\n"
	"  1  connection failure: server unreachable, handshake refused, or no\n"
	"     progress for --timeout seconds\n"
	"  2  bad usage (unknown option, bad or missing argument)\n"
	"  3  the server NACKed one or more frames (the others were acknowledged)\n"
	"  4  bad input: read error or a line longer than the server's max frame\n";

static int quiet;

static void nack_cb(void *arg, uint64_t seq, unsigned code, const char *reason)
{
	const char *dev = arg;
	fprintf(stderr, "mi-send: device %s: seq %" PRIu64 " NACKed: code %u: %s\n", dev, seq,
		code, reason);
}

/* "DEVICE:SEQ;" repeated, cut to size: recomputable by a test from (device, seq) */
static void gen_payload(uint8_t *out, size_t size, const char *dev, uint64_t seq)
{
	char unit[96];
	int n = snprintf(unit, sizeof(unit), "%s:%" PRIu64 ";", dev, seq);
	for (size_t i = 0; i < size; i++)
		out[i] = (uint8_t)unit[i % (size_t)n];
}

static int parse_u64(const char *s, const char *what, uint64_t max, uint64_t *ret)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v > max) {
		fprintf(stderr, "mi-send: bad %s '%s' (0..%" PRIu64 ")\n", what, s, max);
		return -1;
	}
	*ret = v;
	return 0;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_count(mic_t *c, const char *dev, uint16_t topic, uint64_t count, uint32_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	if (!p) {
		fprintf(stderr, "mi-send: out of memory for a %u-byte payload\n", size);
		return EX_INPUT;
	}
	int ex = EX_ACKED;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t seq = mic_next_seq(c);
		gen_payload(p, size, dev, seq);
		int r = mic_send(c, topic, p, size);
		if (r < 0) {
			fprintf(stderr, "mi-send: frame %" PRIu64 " of %" PRIu64 ": %s\n", i + 1, count,
				mic_last_error(c));
			ex = r == -EMSGSIZE ? EX_INPUT : EX_CONN;
			break;
		}
	}
	free(p);
	return ex;
}

/* Set by SIGTERM/SIGINT in --until-stopped mode; the send loop polls it.
 * Every wait in mi_client treats EINTR as a wake-up and re-checks its
 * deadline, so a signal never turns into an error or a hang: a mic_send()
 * blocked on a full window returns once ACKs make room (or after --timeout
 * without one), and the loop then sees the flag. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int catch_stop_signals(void)
{
	/* SA_RESETHAND: a second signal has the default action and ends it */
	struct sigaction sa = { .sa_handler = on_stop_signal, .sa_flags = SA_RESETHAND };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
		fprintf(stderr, "mi-send: sigaction: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* Waits until mono_s() reaches due, serving the connection meanwhile (ACKs
 * in, queued frames out); returns early on a stop signal. */
static void pace_until(mic_t *c, double due)
{
	double now;
	while (!stop_requested && (now = mono_s()) < due) {
		int ms = (int)((due - now) * 1000.0) + 1;
		if (mic_poll(c, ms) < 0) {
			/* not connected: the next mic_send() reconnects; just wait */
			struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
}

static int send_until_stopped(mic_t *c, const char *dev, uint16_t topic, uint32_t size, uint64_t rate)
{
	uint8_t *p = malloc(size ? size : 1);
	if (!p) {
		fprintf(stderr, "mi-send: out of memory for a %u-byte payload\n", size);
		return EX_INPUT;
	}
	int ex = EX_ACKED;
	double gap = rate ? 1.0 / (double)rate : 0, due = mono_s();
	while (!stop_requested) {
		if (rate) {
			/* after a stall (a stage restarting) catch up by at most
			 * 0.1 s worth of frames, not in one burst of everything missed */
			double now = mono_s();
			if (due < now - 0.1)
				due = now - 0.1;
			pace_until(c, due);
			if (stop_requested)
				break;
			due += gap;
		}
		uint64_t seq = mic_next_seq(c);
		gen_payload(p, size, dev, seq);
		int r = mic_send(c, topic, p, size);
		if (r < 0) {
			fprintf(stderr, "mi-send: seq %" PRIu64 ": %s\n", seq, mic_last_error(c));
			ex = r == -EMSGSIZE ? EX_INPUT : EX_CONN;
			break;
		}
	}
	free(p);
	return ex;
}

static int send_lines(mic_t *c, uint16_t topic)
{
	struct mic_stats st;
	mic_get_stats(c, &st);
	/* room for the longest line the server takes, plus one read */
	size_t max_line = st.max_frame, cap = max_line + (64u << 10);
	char *buf = malloc(cap);
	if (!buf) {
		fprintf(stderr, "mi-send: out of memory for a %zu-byte line buffer\n", cap);
		return EX_INPUT;
	}
	size_t have = 0;
	uint64_t lineno = 0;
	int ex = EX_ACKED, eof = 0;
	while (!eof) {
		/* stdin idle: push out what is queued instead of letting it linger */
		struct pollfd p = { .fd = 0, .events = POLLIN };
		if (poll(&p, 1, 0) == 0)
			mic_poll(c, 0);
		ssize_t n = read(0, buf + have, cap - have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "mi-send: read stdin: %s\n", strerror(errno));
			ex = EX_INPUT;
			break;
		}
		if (n == 0)
			eof = 1;
		have += (size_t)n;
		size_t off = 0;
		for (;;) {
			char *nl = memchr(buf + off, '\n', have - off);
			size_t len;
			if (nl)
				len = (size_t)(nl - (buf + off));
			else if (eof && have > off)
				len = have - off;   /* last line without newline */
			else
				break;
			lineno++;
			if (len > max_line) {
				fprintf(stderr, "mi-send: stdin line %" PRIu64 ": %zu bytes, above the "
					"server's max frame of %zu\n", lineno, len, max_line);
				ex = EX_INPUT;
				goto out;
			}
			int r = mic_send(c, topic, buf + off, (uint32_t)len);
			if (r < 0) {
				fprintf(stderr, "mi-send: stdin line %" PRIu64 ": %s\n", lineno,
					mic_last_error(c));
				ex = r == -EMSGSIZE ? EX_INPUT : EX_CONN;
				goto out;
			}
			off += len + (nl ? 1 : 0);
		}
		if (have - off > max_line) {
			fprintf(stderr, "mi-send: stdin line %" PRIu64 ": longer than the server's max "
				"frame of %zu\n", lineno + 1, max_line);
			ex = EX_INPUT;
			break;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
out:
	free(buf);
	return ex;
}

/* base64 (ORIGINAL variant, with padding; surrounding blanks ignored) of a
 * 32-byte key.  Returns 0 or -1 with the message printed. */
static int parse_key(const char *b64, const char *from, uint8_t key[32])
{
	size_t n = strlen(b64), bin_len = 0;
	while (n && (b64[n - 1] == '\n' || b64[n - 1] == '\r' || b64[n - 1] == ' ' || b64[n - 1] == '\t'))
		n--;
	while (n && (*b64 == ' ' || *b64 == '\t')) {
		b64++;
		n--;
	}
	if (sodium_base642bin(key, 32, b64, n, NULL, &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != 32) {
		fprintf(stderr, "mi-send: %s: not a 32-byte key in base64 (44 characters, as mi-keys prints)\n", from);
		return -1;
	}
	return 0;
}

static int read_key_file(const char *path, uint8_t key[32])
{
	char line[256];
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "mi-send: --key-file %s: %s\n", path, strerror(errno));
		return -1;
	}
	int ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	char from[300];
	snprintf(from, sizeof(from), "--key-file %s", path);
	int r = ok ? parse_key(line, from, key) : (fprintf(stderr, "mi-send: %s: empty\n", from), -1);
	sodium_memzero(line, sizeof(line));
	return r;
}

static int parse_fpr(const char *hex, uint8_t fpr[32])
{
	size_t bin_len = 0;
	if (strlen(hex) != 64 || sodium_hex2bin(fpr, 32, hex, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32) {
		fprintf(stderr, "mi-send: --fingerprint: want 64 hex digits\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "host", required_argument, 0, 'h' },
		{ "port", required_argument, 0, 'p' },
		{ "device", required_argument, 0, 'd' },
		{ "topic", required_argument, 0, 't' },
		{ "count", required_argument, 0, 'n' },
		{ "until-stopped", no_argument, 0, 'U' },
		{ "rate", required_argument, 0, 'R' },
		{ "size", required_argument, 0, 's' },
		{ "window", required_argument, 0, 'w' },
		{ "start-seq", required_argument, 0, 'S' },
		{ "timeout", required_argument, 0, 'T' },
		{ "quiet", no_argument, 0, 'q' },
		{ "key", required_argument, 0, 'K' },
		{ "key-file", required_argument, 0, 'F' },
		{ "fingerprint", required_argument, 0, 'P' },
		{ "mac", no_argument, 0, 'M' },
		{ "seal", no_argument, 0, 'E' },
		{ "help", no_argument, 0, 'H' },
		{ 0, 0, 0, 0 },
	};
	struct mic_opts o = { .host = "127.0.0.1", .port = 7400 };
	uint64_t v, count = 0, size = 100, timeout = 60, rate = 0;
	int have_count = 0, until_stopped = 0, opt;
	static uint8_t key[32], fpr[32];
	while ((opt = getopt_long(argc, argv, ":h:p:d:t:q", lopts, NULL)) != -1) {
		switch (opt) {
		case 'h': o.host = optarg; break;
		case 'p':
			if (parse_u64(optarg, "port", 65535, &v) < 0 || v == 0)
				return EX_USAGE;
			o.port = (uint16_t)v;
			break;
		case 'd': o.device = optarg; break;
		case 't':
			if (parse_u64(optarg, "topic", 65535, &v) < 0)
				return EX_USAGE;
			o.topic = (uint16_t)v;
			break;
		case 'n':
			if (parse_u64(optarg, "count", UINT64_MAX, &count) < 0)
				return EX_USAGE;
			have_count = 1;
			break;
		case 'U': until_stopped = 1; break;
		case 'R':
			if (parse_u64(optarg, "rate", 100000000, &rate) < 0)
				return EX_USAGE;
			if (!rate) {
				fputs("mi-send: --rate is at least 1 frame per second\n", stderr);
				return EX_USAGE;
			}
			break;
		case 's':
			if (parse_u64(optarg, "size", 16u << 20, &size) < 0)
				return EX_USAGE;
			break;
		case 'w':
			if (parse_u64(optarg, "window", 1u << 24, &v) < 0 || v == 0)
				return EX_USAGE;
			o.window_frames = (uint32_t)v;
			break;
		case 'S':
			if (parse_u64(optarg, "start seq", UINT64_MAX, &o.start_seq) < 0)
				return EX_USAGE;
			break;
		case 'T':
			if (parse_u64(optarg, "timeout", 86400, &timeout) < 0 || timeout == 0)
				return EX_USAGE;
			break;
		case 'q': quiet = 1; break;
		case 'K':
			if (parse_key(optarg, "--key", key) < 0)
				return EX_USAGE;
			o.key = key;
			break;
		case 'F':
			if (read_key_file(optarg, key) < 0)
				return EX_USAGE;
			o.key = key;
			break;
		case 'P':
			if (parse_fpr(optarg, fpr) < 0)
				return EX_USAGE;
			o.fingerprint = fpr;
			break;
		case 'M': o.mac = 1; break;
		case 'E': o.seal = 1; break;
		case 'H': fputs(usage, stdout); return EX_ACKED;
		default:
			cli_bad_option("mi-send", opt, argv);
			fputs(usage, stderr);
			return EX_USAGE;
		}
	}
	if (optind < argc || !o.device) {
		fprintf(stderr, "mi-send: %s (see --help)\n",
			o.device ? "unexpected argument" : "-d DEVICE is required");
		return EX_USAGE;
	}
	if (have_count && until_stopped) {
		fprintf(stderr, "mi-send: --count and --until-stopped exclude each other\n");
		return EX_USAGE;
	}
	if (rate && !until_stopped) {
		fprintf(stderr, "mi-send: --rate needs --until-stopped\n");
		return EX_USAGE;
	}
	if ((o.mac || o.seal) && !o.key) {
		fprintf(stderr, "mi-send: %s needs the device key (--key or --key-file)\n",
			o.seal ? "--seal" : "--mac");
		return EX_USAGE;
	}
	if (o.mac && o.seal) {
		fprintf(stderr, "mi-send: --mac and --seal exclude each other: a sealed frame carries "
			"no MAC, its tag authenticates it\n");
		return EX_USAGE;
	}
	o.retry_deadline_ms = (int)(timeout * 1000);
	/* tests restart stages in ~100 ms: do not sleep through the restart */
	o.backoff_max_ms = 200;
	/* every frame of the window must fit its bytes too */
	int generated = have_count || until_stopped;
	uint64_t per = size + 36 + (o.mac || o.seal ? 16 : 0), wf = o.window_frames ? o.window_frames : 4096;
	if (generated && per * wf > (4u << 20))
		o.window_bytes = per * wf > (1u << 30) ? (1u << 30) : (uint32_t)(per * wf);
	if (!generated)
		o.window_bytes = 32u << 20;   /* lines up to the 16 MiB hard cap */
	o.on_nack = nack_cb;
	o.on_nack_arg = (void *)o.device;

	mic_t *c;
	int r = mic_new(&o, &c);
	sodium_memzero(key, sizeof(key));   /* mic_new keeps its own copy */
	if (r < 0) {
		fprintf(stderr, "mi-send: device '%s': %s\n", o.device,
			r == -EINVAL ? "invalid device id (1..64 of [A-Za-z0-9._:-])" : mic_strerror(r));
		return EX_USAGE;
	}
	/* before connecting: a signal during the first connect stops it too */
	if (until_stopped && catch_stop_signals() < 0) {
		mic_close(c);
		return EX_USAGE;
	}
	double t0 = mono_s();
	int ex = EX_ACKED;
	r = mic_connect(c, (int)(timeout * 1000));
	if (r < 0) {
		fprintf(stderr, "mi-send: gave up after %.1f s: %s\n", mono_s() - t0, mic_last_error(c));
		mic_close(c);
		return EX_CONN;
	}
	uint64_t first = mic_next_seq(c);
	if (until_stopped)
		ex = send_until_stopped(c, o.device, o.topic, (uint32_t)size, rate);
	else if (have_count)
		ex = send_count(c, o.device, o.topic, count, (uint32_t)size);
	else
		ex = send_lines(c, o.topic);
	if (ex == EX_ACKED || ex == EX_INPUT) {
		/* even after bad input, what was queued is waited for */
		r = mic_flush(c, -1);
		if (r == -MIC_ENACK) {
			if (ex == EX_ACKED)
				ex = EX_NACKED;
		} else if (r < 0) {
			fprintf(stderr, "mi-send: gave up: %s\n", mic_last_error(c));
			ex = EX_CONN;
		}
	}
	struct mic_stats st;
	mic_get_stats(c, &st);
	if (ex == EX_NACKED)
		fprintf(stderr, "mi-send: %s\n", mic_last_error(c));
	if (st.welcome_behind)
		fprintf(stderr, "mi-send: warning: device %s: the server reported a durable seq below "
			"one it had acknowledged %" PRIu64 " time(s): acknowledged frames were lost\n",
			o.device, st.welcome_behind);
	if (!quiet)
		fprintf(stderr, "mi-send: device %s %s:%u: sent %" PRIu64 " acked %" PRIu64
			" resent %" PRIu64 " nacked %" PRIu64 " reconnects %" PRIu64
			" seq %" PRIu64 "..%" PRIu64 " elapsed %.3fs%s\n",
			o.device, o.host, o.port, st.sent, st.acked, st.resent, st.nacked,
			st.reconnects, first, st.next_seq - 1, mono_s() - t0,
			ex == EX_ACKED ? "" : " FAILED");
	mic_close(c);
	return ex;
}
