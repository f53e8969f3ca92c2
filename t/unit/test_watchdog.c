/* gw_watchdog: records shared with a forked child, as between a worker
 * and the master. */
#include <sys/wait.h>
#include <unistd.h>

#include "gw_watchdog.h"
#include "tap.h"

int
main(void)
{
    gw_watchdog_t *wd = gw_watchdog_new(4);
    ok(wd != NULL, "four records mapped");
    ok(gw_watchdog_take(wd, 4) == NULL, "take: out of range -> NULL");
    ok(gw_watchdog_record(wd, 9) == NULL, "record: out of range -> NULL");
    ok(gw_watchdog_take(NULL, 0) == NULL, "take: no segment -> NULL");
    is_int(gw_watchdog_beats(NULL), 0, "beats of no record: 0");
    gw_watchdog_beat(NULL);
    gw_watchdog_enter(NULL, 1, 1);
    gw_watchdog_set_ready(NULL);
    ok(!gw_watchdog_ready(NULL), "calls on no record do nothing");

    gw_watchdog_rec_t *rec = gw_watchdog_take(wd, 2);
    const gw_watchdog_rec_t *seen = gw_watchdog_record(wd, 2);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 5; i++)
            gw_watchdog_beat(rec);
        gw_watchdog_set_ready(rec);
        gw_watchdog_enter(rec, 3, 2); /* then "stuck" in route 2's plugin 2 */
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    is_int(gw_watchdog_beats(seen), 5, "the child's beats are seen");
    ok(gw_watchdog_ready(seen), "and its ready flag");
    int route, plugin;
    gw_watchdog_running(seen, &route, &plugin);
    is_int(route, 3, "the route it entered");
    is_int(plugin, 2, "the plugin it entered");

    gw_watchdog_beat(rec);
    gw_watchdog_running(seen, &route, &plugin);
    ok(route == 0 && plugin == 0, "a loop turn forgets the plugin");
    is_int(gw_watchdog_beats(seen), 6, "and counts");

    gw_watchdog_take(wd, 2);
    ok(gw_watchdog_beats(seen) == 0 && !gw_watchdog_ready(seen), "take zeroes the record");
    gw_watchdog_free(wd);
    gw_watchdog_free(NULL);
    done_testing();
}
