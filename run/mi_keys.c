/* mi-keys — manage the device registry (keys file, format in common/keys.h).
 *
 * Every change loads the whole file (refusing a malformed or group/other-
 * accessible one), edits it in memory and writes it back atomically with
 * mode 0600.  Keys are printed once, on stdout, when made (add, rotate);
 * nothing else ever prints them.  Concurrent mi-keys runs on one file are
 * serialised by an flock on its directory, so no change is lost. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cli.h"
#include "common/keys.h"

/* 2 for bad usage, as every program answers it */
enum { EXIT_OK = 0, EXIT_NOTFOUND = 1, EXIT_USAGE = CLI_EX_USAGE, EXIT_FILE = 3 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mi-keys [-f FILE] COMMAND [ARGS]\n"
		"\n"
		"Manages the module-ingest device registry (keys file): one line per device\n"
		"with its 32-byte key, allowed topics, optional hardware fingerprint and\n"
		"enabled flag.  Every change rewrites the file atomically with mode 0600.\n"
		"\n"
		"  add DEVICE [--topics a,b|*] [--fingerprint HEX] [--require mac|seal]\n"
		"                     new device with a fresh random key, printed once on\n"
		"                     stdout in base64; topics default to * (every topic);\n"
		"                     HEX: 64 hex digits; creates FILE if missing\n"
		"  set DEVICE [--topics a,b|*] [--require mac|seal|none]\n"
		"                     change a device's topics (names from the config's\n"
		"                     [topics]) or what its DATA frames must carry: mac (a\n"
		"                     per-frame MAC or a seal), seal (sealed), none\n"
		"  list               every device: id, state, fingerprint set, requirement,\n"
		"                     topics (no keys)\n"
		"  show DEVICE        one device: state, topics, fingerprint, requirement\n"
		"                     (not the key)\n"
		"  disable DEVICE     refuse the device (its key is kept)\n"
		"  enable DEVICE      accept it again\n"
		"  rotate DEVICE      replace its key with a fresh one, printed once\n"
		"  remove DEVICE      delete the device and its key\n"
		"\n"
		"  -f, --file FILE    the keys file (default: ./keys)\n"
		"\n"
		"A running ingestd reads the file again on SIGHUP: sessions of changed,\n"
		"disabled or removed devices are closed, the others go on.\n"
		"  -h, --help         this text\n"
		"\n"
		"Exit status: 0 ok, 1 device not found (or already there, for add), 2 bad\n"
		"usage, 3 file problem (missing, unreadable, malformed, mode not 0600,\n"
		"write failed).\n");
}

/* Serialises mi-keys runs on one file: an exclusive flock on its directory
 * (the file itself is replaced by rename, so it cannot carry the lock). */
static int lock_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mi-keys: %s: directory %s: %s\n", path, dir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX) < 0) {
		fprintf(stderr, "mi-keys: %s: lock on %s: %s\n", path, dir, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int print_key(const uint8_t key[KEYS_KEY_LEN])
{
	char b64[KEYS_KEY_B64_LEN + 1];
	keys_key_to_base64(key, b64);
	int r = printf("%s\n", b64) < 0 || fflush(stdout) != 0;
	sodium_memzero(b64, sizeof(b64));
	return r ? -1 : 0;
}

static void cmd_list(const keys_t *k)
{
	int w = 6;
	for (size_t i = 0; i < keys_count(k); i++)
		if (keys_at(k, i)->id_len > w)
			w = keys_at(k, i)->id_len;
	printf("%-*s  %-8s  %-3s  %-7s  %s\n", w, "DEVICE", "STATE", "FPR", "REQUIRE", "TOPICS");
	for (size_t i = 0; i < keys_count(k); i++) {
		const struct keys_device *d = keys_at(k, i);
		printf("%-*s  %-8s  %-3s  %-7s  %s\n", w, d->id, d->enabled ? "enabled" : "disabled",
		       d->has_fpr ? "yes" : "no", keys_require_name(d->require), d->topics);
	}
}

static void cmd_show(const struct keys_device *d)
{
	char hex[2 * KEYS_FPR_LEN + 1] = "none";
	if (d->has_fpr)
		sodium_bin2hex(hex, sizeof(hex), d->fpr, KEYS_FPR_LEN);
	printf("device:      %s\nstate:       %s\ntopics:      %s\nfingerprint: %s\nrequire:     %s\n", d->id,
	       d->enabled ? "enabled" : "disabled", d->topics, hex, keys_require_name(d->require));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },   { "topics", required_argument, NULL, 't' },
		{ "fingerprint", required_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' },
		{ "require", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = "keys", *topics = NULL, *fprhex = NULL, *require = NULL;
	char err[512];
	int o;
	while ((o = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': file = optarg; break;
		case 't': topics = optarg; break;
		case 'p': fprhex = optarg; break;
		case 'r': require = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		default:
			cli_bad_option("mi-keys", o, argv);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	int nargs = argc - optind;
	const char *cmd = nargs > 0 ? argv[optind] : NULL, *dev = nargs > 1 ? argv[optind + 1] : NULL;
	static const char *const with_dev[] = { "add", "show", "disable", "enable", "rotate", "remove", "set" };
	int needs_dev = 0, known = cmd && strcmp(cmd, "list") == 0;
	for (size_t i = 0; cmd && i < sizeof(with_dev) / sizeof(with_dev[0]); i++)
		if (strcmp(cmd, with_dev[i]) == 0)
			known = needs_dev = 1;
	if (!cmd || !known) {
		if (cmd)
			fprintf(stderr, "mi-keys: unknown command '%s'\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (nargs != 1 + needs_dev) {
		fprintf(stderr, "mi-keys: %s takes %s\n", cmd, needs_dev ? "one DEVICE" : "no argument");
		return EXIT_USAGE;
	}
	int is_add = strcmp(cmd, "add") == 0, is_set = strcmp(cmd, "set") == 0;
	if ((fprhex && !is_add) || ((topics || require) && !is_add && !is_set)) {
		fprintf(stderr, "mi-keys: --fingerprint goes with add only, --topics and --require with add or set\n");
		return EXIT_USAGE;
	}
	if (is_set && !topics && !require) {
		fprintf(stderr, "mi-keys: set needs --topics or --require\n");
		return EXIT_USAGE;
	}
	int req = require ? keys_require_parse(require, strlen(require)) : KEYS_REQ_NONE;
	if (req < 0) {
		fprintf(stderr, "mi-keys: --require must be mac, seal or none, not '%s'\n", require);
		return EXIT_USAGE;
	}
	if (dev && !mi_devid_valid((const uint8_t *)dev, strlen(dev))) {
		fprintf(stderr, "mi-keys: bad device id '%s': 1-%d characters of A-Z a-z 0-9 . _ : -\n",
			dev, MI_DEVID_MAX);
		return EXIT_USAGE;
	}
	uint8_t fpr[KEYS_FPR_LEN];
	if (fprhex && keys_fpr_parse(fprhex, strlen(fprhex), fpr) < 0) {
		fprintf(stderr, "mi-keys: --fingerprint must be 64 hex digits (32 bytes)\n");
		return EXIT_USAGE;
	}
	if (!topics && is_add)
		topics = "*";
	if (topics && keys_topics_valid(topics, strlen(topics), err, sizeof(err)) < 0) {
		fprintf(stderr, "mi-keys: --topics: %s\n", err);
		return EXIT_USAGE;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "mi-keys: libsodium failed to initialise\n");
		return EXIT_FILE;
	}

	int writes = strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0;
	int lockfd = -1, rc = EXIT_OK;
	keys_t *k = NULL;
	uint8_t key[KEYS_KEY_LEN];
	if (writes && (lockfd = lock_dir(file)) < 0)
		return EXIT_FILE;
	int r = keys_load(file, &k, err, sizeof(err));
	if (r == -ENOENT && is_add) {
		r = keys_new(&k);
		snprintf(err, sizeof(err), "%s", strerror(-r));
	}
	if (r < 0) {
		fprintf(stderr, "mi-keys: %s%s\n", err,
			r == -ENOENT ? " (mi-keys add DEVICE creates it)" : "");
		rc = EXIT_FILE;
		goto cleanup;
	}
	const struct keys_device *d = dev ? keys_find(k, dev, strlen(dev)) : NULL;
	if (is_add && d) {
		fprintf(stderr, "mi-keys: %s: device '%s' already exists (line %u)\n", file, dev, d->line);
		rc = EXIT_NOTFOUND;
		goto cleanup;
	}
	if (dev && !is_add && !d) {
		fprintf(stderr, "mi-keys: %s: no device '%s'\n", file, dev);
		rc = EXIT_NOTFOUND;
		goto cleanup;
	}

	int print = 0;
	const char *done = NULL;
	if (strcmp(cmd, "list") == 0) {
		cmd_list(k);
		goto cleanup;
	} else if (strcmp(cmd, "show") == 0) {
		cmd_show(d);
		goto cleanup;
	} else if (is_add || strcmp(cmd, "rotate") == 0) {
		if (keys_generate(key) < 0) {
			fprintf(stderr, "mi-keys: libsodium failed to initialise\n");
			rc = EXIT_FILE;
			goto cleanup;
		}
		r = is_add ? keys_add(k, dev, topics, fprhex ? fpr : NULL, key, err, sizeof(err))
			   : keys_set_key(k, dev, key);
		if (r < 0) {
			fprintf(stderr, "mi-keys: %s: %s\n", file, is_add ? err : strerror(-r));
			rc = r == -EEXIST ? EXIT_NOTFOUND : r == -EINVAL ? EXIT_USAGE : EXIT_FILE;
			goto cleanup;
		}
		if (is_add && require)
			keys_set_require(k, dev, req);
		print = 1;
		done = is_add ? "added" : "rotated the key of";
	} else if (is_set) {
		if (topics && (r = keys_set_topics(k, dev, topics, err, sizeof(err))) < 0) {
			fprintf(stderr, "mi-keys: --topics: %s\n", err);
			rc = EXIT_USAGE;
			goto cleanup;
		}
		if (require)
			keys_set_require(k, dev, req);
		done = "changed";
	} else if (strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0) {
		int en = cmd[0] == 'e';
		if (d->enabled == en) {
			fprintf(stderr, "mi-keys: %s: device '%s' is already %sd\n", file, dev, cmd);
			goto cleanup;
		}
		keys_set_enabled(k, dev, en);
		done = en ? "enabled" : "disabled";
	} else {
		keys_remove(k, dev);
		done = "removed";
	}
	if (keys_write(k, file, err, sizeof(err)) < 0) {
		fprintf(stderr, "mi-keys: %s\n", err);
		rc = EXIT_FILE;
		goto cleanup;
	}
	if (print && print_key(key) < 0) {
		fprintf(stderr, "mi-keys: cannot print the key: %s; rotate it to get a new one\n",
			strerror(errno));
		rc = EXIT_FILE;
		goto cleanup;
	}
	fprintf(stderr, "mi-keys: %s: %s device '%s'%s\n", file, done, dev,
		print ? "; its key (above) is not shown again" : "");
cleanup:
	sodium_memzero(key, sizeof(key));
	keys_free(k);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}
