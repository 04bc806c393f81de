#include "common/fault.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fault_armed;
static char f_point[64];
static char f_marker[512];
static long f_left;

void fault_init(void)
{
	const char *v = getenv("MI_FAULT");
	if (!v || !*v)
		return;
	char buf[640];
	snprintf(buf, sizeof(buf), "%s", v);
	char *n = strchr(buf, ':');
	if (!n)
		return;
	*n++ = 0;
	char *m = strchr(n, ':');
	if (m)
		*m++ = 0;
	snprintf(f_point, sizeof(f_point), "%s", buf);
	snprintf(f_marker, sizeof(f_marker), "%s", m ? m : "");
	f_left = atol(n);
	if (f_left < 1)
		return;
	if (f_marker[0] && access(f_marker, F_OK) == 0)
		return;   /* fired already, in an earlier incarnation */
	fault_armed = 1;
}

void fault_hit(const char *point)
{
	if (strcmp(point, f_point) || --f_left > 0)
		return;
	fault_armed = 0;
	if (f_marker[0]) {
		int fd = open(f_marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	fprintf(stderr, "fault: %s reached, killing myself\n", point);
	kill(getpid(), SIGKILL);
}
