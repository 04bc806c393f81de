#include "common/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* "-xyz" holding ch: a cluster of short options, not "--long" or "-". */
static int short_cluster_has(const char *a, int ch)
{
	return a && a[0] == '-' && a[1] && a[1] != '-' && ch > 0 && strchr(a + 1, ch);
}

/* What glibc's getopt_long leaves behind:
 * - an unknown or ambiguous "--long": '?', optopt 0, argv[optind - 1] is it;
 * - "--long=value" for an option without an argument: '?', optopt its val;
 * - "--long" without its required argument (always the last word): ':';
 * - an unknown short option: '?', optopt the letter; argv[optind - 1] holds
 *   it if it ended its cluster, else argv[optind] does (optind not moved);
 * - "-c" without its argument: ':', optopt 'c'.
 * So a '?' with optopt set is a long option only if the previous word is
 * "--long=value" and the current one is not a cluster holding the letter. */
int cli_bad_option_msg(char *buf, size_t len, const char *prog, int c, int opt, int ind, char *const argv[])
{
	const char *prev = ind > 0 ? argv[ind - 1] : NULL;
	int prev_long = prev && !strncmp(prev, "--", 2) && prev[2];
	int prev_len = prev ? (int)strcspn(prev, "=") : 0;
	char letter[3] = { '-', (char)opt, 0 };

	if (c == ':') {
		if (prev_long)
			return snprintf(buf, len, "%s: option '%.*s' needs an argument", prog, prev_len, prev);
		return snprintf(buf, len, "%s: option '%s' needs an argument", prog, letter);
	}
	if (opt == 0)
		return snprintf(buf, len, "%s: unknown option '%.*s'", prog, prev_len, prev ? prev : "");
	if (prev_long && prev[prev_len] == '=' && !short_cluster_has(argv[ind], opt))
		return snprintf(buf, len, "%s: option '%.*s' takes no argument", prog, prev_len, prev);
	return snprintf(buf, len, "%s: unknown option '%s'", prog, letter);
}

void cli_bad_option(const char *prog, int c, char *const argv[])
{
	char line[512];
	cli_bad_option_msg(line, sizeof(line), prog, c, optopt, optind, argv);
	fprintf(stderr, "%s\n", line);
}
