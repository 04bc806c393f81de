/* fault — crash points for tests, in the spirit of SQLite's sqlite3FaultSim.
 *
 * MI_FAULT="point:n[:marker]" makes the n-th pass through fault_point("point")
 * kill the process with SIGKILL, as a power cut or OOM kill would, at the
 * exact moment the name describes.  With a marker path the fault fires only
 * if the marker does not exist yet (it is created first), so the restarted
 * process runs on.  Unset, a point costs one predictable branch.
 */
#ifndef MI_FAULT_H
#define MI_FAULT_H

extern int fault_armed;   /* MI_FAULT was set */
void fault_hit(const char *point);

static inline void fault_point(const char *point)
{
	if (__builtin_expect(fault_armed, 0))
		fault_hit(point);
}

/* Reads MI_FAULT; call once at start-up. */
void fault_init(void);
#endif
