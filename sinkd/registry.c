#include <string.h>

#include "sinkd/sink.h"

extern const struct sink_desc sink_disk;

const struct sink_desc *const sink_registry[] = {
	&sink_disk,
	NULL,
};

const struct sink_desc *sink_find(const char *name)
{
	for (const struct sink_desc *const *d = sink_registry; *d; d++)
		if (!strcmp((*d)->name, name))
			return *d;
	return NULL;
}
