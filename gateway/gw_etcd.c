/* Placeholder until the etcd watcher lands: refuses to start. */
#include "gw_log.h"
#include "gw_watch.h"

static void *
start(uv_loop_t *loop, gw_log_t *log, const gw_registry_conf_t *reg,
      const gw_discovery_conf_t *const *targets, size_t ntargets, const gw_disc_report_t *report,
      void *arg)
{
    gw_log(log, GW_LOG_ERROR, "registry %s: etcd discovery is not built in", reg->name);
    return NULL;
}

static void
stop(void *w)
{
}

const gw_watcher_ops_t gw_etcd_watcher = {GW_DISC_ETCD, start, stop};
