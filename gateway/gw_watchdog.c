/* The watchdog records (gw_watchdog.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "gw_watchdog.h"

struct gw_watchdog_rec_s {
    _Atomic uint64_t beats;
    _Atomic int32_t route;
    _Atomic int32_t plugin;
    _Atomic int32_t ready;
    char pad[44]; /* one cache line each: workers never share one */
};

struct gw_watchdog_s {
    gw_watchdog_rec_t *slots;
    size_t nslots;
};

gw_watchdog_t *
gw_watchdog_new(size_t nslots)
{
    gw_watchdog_t *wd = calloc(1, sizeof(*wd));
    if (wd == NULL)
        return NULL;
    void *p = mmap(NULL, nslots * sizeof(gw_watchdog_rec_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        free(wd);
        return NULL;
    }
    wd->slots = p;
    wd->nslots = nslots;
    return wd;
}

void
gw_watchdog_free(gw_watchdog_t *wd)
{
    if (wd == NULL)
        return;
    munmap(wd->slots, wd->nslots * sizeof(gw_watchdog_rec_t));
    free(wd);
}

gw_watchdog_rec_t *
gw_watchdog_take(gw_watchdog_t *wd, size_t i)
{
    if (wd == NULL || i >= wd->nslots)
        return NULL;
    gw_watchdog_rec_t *wt = &wd->slots[i];
    atomic_store_explicit(&wt->beats, 0, memory_order_relaxed);
    atomic_store_explicit(&wt->route, 0, memory_order_relaxed);
    atomic_store_explicit(&wt->plugin, 0, memory_order_relaxed);
    atomic_store_explicit(&wt->ready, 0, memory_order_relaxed);
    return wt;
}

const gw_watchdog_rec_t *
gw_watchdog_record(const gw_watchdog_t *wd, size_t i)
{
    return wd != NULL && i < wd->nslots ? &wd->slots[i] : NULL;
}

void
gw_watchdog_beat(gw_watchdog_rec_t *wt)
{
    if (wt == NULL)
        return;
    /* one writer: no locked instruction */
    uint64_t b = atomic_load_explicit(&wt->beats, memory_order_relaxed);
    atomic_store_explicit(&wt->beats, b + 1, memory_order_relaxed);
    atomic_store_explicit(&wt->plugin, 0, memory_order_relaxed);
}

void
gw_watchdog_set_ready(gw_watchdog_rec_t *wt)
{
    if (wt != NULL)
        atomic_store_explicit(&wt->ready, 1, memory_order_release);
}

int
gw_watchdog_ready(const gw_watchdog_rec_t *wt)
{
    return wt != NULL &&
           atomic_load_explicit(&((gw_watchdog_rec_t *)wt)->ready, memory_order_acquire);
}

uint64_t
gw_watchdog_beats(const gw_watchdog_rec_t *wt)
{
    if (wt == NULL)
        return 0;
    return atomic_load_explicit(&((gw_watchdog_rec_t *)wt)->beats, memory_order_relaxed);
}

void
gw_watchdog_running(const gw_watchdog_rec_t *wt, int *route, int *plugin)
{
    gw_watchdog_rec_t *w = (gw_watchdog_rec_t *)wt;
    *plugin = atomic_load_explicit(&w->plugin, memory_order_relaxed);
    *route = *plugin ? atomic_load_explicit(&w->route, memory_order_relaxed) : 0;
}

void
gw_watchdog_enter(gw_watchdog_rec_t *wt, int route, int plugin)
{
    if (wt == NULL)
        return;
    atomic_store_explicit(&wt->route, route, memory_order_relaxed);
    atomic_store_explicit(&wt->plugin, plugin, memory_order_relaxed);
}
