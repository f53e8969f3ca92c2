/*
 * The command line and the master process.
 *
 * The master loads the config, opens every listening socket once (one
 * SO_REUSEPORT socket per worker slot and address, so the kernel spreads
 * connections without a shared accept lock), forks the workers and then
 * only waits for signals: it re-spawns a worker that dies, reloads on
 * SIGHUP by starting new workers on the same sockets and draining the old
 * ones, and stops gracefully on SIGTERM/SIGQUIT/SIGINT. The sockets stay
 * open in the master for its whole life, so no reload or re-spawn ever
 * resets a connection waiting in an accept queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_disc.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_metrics.h"
#include "gw_sdnotify.h"
#include "gw_shstate.h"
#include "gw_worker.h"

#define GW_VERSION_STR "0.1.0"
#define MAX_WORKERS 256

typedef struct {
    pid_t pid;
    time_t started;
    int generation;
} worker_proc_t;

typedef struct {
    gw_conf_t *conf;
    gw_log_t *log;
    gw_metrics_t *metrics;
    int nworkers;
    int nlisten;
    int *fds; /* [slot * nlisten + i] */
    int status_fd;
    gw_worker_shared_t shared; /* the admin socket, the shared state segment */
    worker_proc_t workers[MAX_WORKERS];
    worker_proc_t old[MAX_WORKERS]; /* draining after a reload */
    gw_conf_t *old_conf;
    gw_metrics_t *old_metrics;
    int generation;
    int stopping;
    /* the discovery process: NULL shm when no upstream has discovery */
    gw_disc_shm_t *disc_shm;
    worker_proc_t disc;
} master_t;

static void
usage(FILE *f)
{
    fprintf(f, "usage: gateway [-c FILE] [-t] [-d] [-s reload|stop|reopen] [-v]\n"
               "  -c FILE   configuration (default conf/gateway.yaml)\n"
               "  -t        check the configuration and exit\n"
               "  -d        watch the registries of the configuration in the foreground and\n"
               "            print each node list and registry state change as a JSON line\n"
               "  -s SIG    signal the running master (its pid file): reload (SIGHUP),\n"
               "            stop (SIGTERM, graceful) or reopen the logs (SIGUSR1)\n"
               "  -v        print the version\n");
}

static int
open_listener(const gw_listen_conf_t *l, int reuseport, char *err, size_t errlen)
{
    int fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (l->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) != 0 || listen(fd, 511) != 0) {
        snprintf(err, errlen, "%s:%d: %s", l->host, l->port, strerror(errno));
        close(fd);
        return -1;
    }
    /* workers inherit the socket across fork; exec is not involved */
    fcntl(fd, F_SETFD, 0);
    return fd;
}

static int
open_listeners(master_t *m)
{
    char err[256];
    const gw_conf_t *conf = m->conf;
    m->nlisten = (int)conf->nlisten;
    m->fds = calloc((size_t)(m->nworkers * m->nlisten) + 1, sizeof(int));
    if (m->fds == NULL)
        return -1;
    for (int s = 0; s < m->nworkers; s++) {
        for (int i = 0; i < m->nlisten; i++) {
            int fd = open_listener(&conf->listen[i], 1, err, sizeof(err));
            if (fd < 0) {
                gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s", err);
                return -1;
            }
            m->fds[s * m->nlisten + i] = fd;
        }
    }
    m->status_fd = -1;
    if (conf->has_status_listen) {
        m->status_fd = open_listener(&conf->status_listen, 0, err, sizeof(err));
        if (m->status_fd < 0) {
            gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s (status_listen)", err);
            return -1;
        }
    }
    m->shared.admin_fd = -1;
    if (conf->has_admin) {
        m->shared.admin_fd = open_listener(&conf->admin_listen, 0, err, sizeof(err));
        if (m->shared.admin_fd < 0) {
            gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s (gateway.admin)", err);
            return -1;
        }
        gw_log(m->log, GW_LOG_INFO, "admin API on %s:%d (served by worker 0)",
               conf->admin_listen.host, conf->admin_listen.port);
    }
    return 0;
}

static pid_t
spawn(master_t *m, int slot)
{
    pid_t pid = fork();
    if (pid < 0) {
        gw_log(m->log, GW_LOG_ERROR, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int rc = gw_worker_run(m->conf, slot, m->nworkers, &m->fds[slot * m->nlisten],
                               (size_t)m->nlisten, m->status_fd, m->metrics, m->disc_shm, m->log,
                               &m->shared);
        _exit(rc);
    }
    m->workers[slot].pid = pid;
    m->workers[slot].started = time(NULL);
    m->workers[slot].generation = m->generation;
    return pid;
}

/* The discovery process: the watchers of every registry, once per instance
 * (gw_disc.h). Re-spawned like a worker when it dies; the lists it
 * published stay in the segment meanwhile. */
static void
spawn_disc(master_t *m)
{
    if (m->disc_shm == NULL || gw_disc_source_count(m->conf) == 0)
        return;
    gw_disc_shm_set_conf(m->disc_shm, m->conf);
    pid_t pid = fork();
    if (pid < 0) {
        gw_log(m->log, GW_LOG_ERROR, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int i = 0; i < m->nworkers * m->nlisten; i++)
            close(m->fds[i]);
        if (m->status_fd >= 0)
            close(m->status_fd);
        if (m->shared.admin_fd >= 0)
            close(m->shared.admin_fd);
        gw_log_set_tag(m->log, "discovery");
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
        _exit(gw_disc_run(m->conf, m->disc_shm, m->log));
    }
    m->disc.pid = pid;
    m->disc.started = time(NULL);
}

/* Stops the discovery process and waits for it (at most 2 s, then
 * SIGKILL): the segment has one writer at a time. */
static void
stop_disc(master_t *m)
{
    if (m->disc.pid <= 0)
        return;
    kill(m->disc.pid, SIGTERM);
    for (int i = 0; i < 400; i++) {
        if (waitpid(m->disc.pid, NULL, WNOHANG) == m->disc.pid) {
            m->disc.pid = 0;
            return;
        }
        if (i == 200)
            kill(m->disc.pid, SIGKILL);
        usleep(10000);
    }
    m->disc.pid = 0;
}

/* After a reload: the discovery process re-reads the config and keeps the
 * watchers of registries that did not change (gw_disc_run); it is started
 * when discovery appears and stopped when it goes. Its lists stay in the
 * segment across all of it, so new workers never see an empty pool. */
static void
reload_disc(master_t *m)
{
    if (gw_disc_source_count(m->conf) == 0) {
        stop_disc(m);
        gw_disc_shm_clear(m->disc_shm);
        return;
    }
    if (m->disc_shm == NULL)
        m->disc_shm = gw_disc_shm_new(m->conf);
    gw_disc_shm_set_conf(m->disc_shm, m->conf);
    if (m->disc.pid > 0)
        kill(m->disc.pid, SIGHUP);
    else
        spawn_disc(m);
}

static int
write_pid_file(master_t *m)
{
    const char *path = m->conf->pid_file;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0755); /* "logs/" may not exist on a fresh checkout */
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "pid file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return 0;
}

static int
signal_master(const gw_conf_t *conf, const char *what)
{
    int sig = strcmp(what, "reload") == 0   ? SIGHUP
              : strcmp(what, "stop") == 0   ? SIGTERM
              : strcmp(what, "reopen") == 0 ? SIGUSR1
                                            : 0;
    if (sig == 0) {
        fprintf(stderr, "gateway: unknown signal \"%s\" (reload, stop or reopen)\n", what);
        return 1;
    }
    FILE *f = fopen(conf->pid_file, "r");
    int pid = 0;
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "gateway: cannot read pid file %s\n", conf->pid_file);
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill(pid, sig) != 0) {
        fprintf(stderr, "gateway: kill %d: %s\n", pid, strerror(errno));
        return 1;
    }
    return 0;
}

/*
 * Parts of the config format that later modules implement. Refusing them
 * beats a silent downgrade: a "tls: true" listener must never serve
 * plaintext. Returns the number of errors printed.
 */
static int
check_supported(const gw_conf_t *conf, FILE *out)
{
    int errors = 0;
    for (size_t i = 0; i < conf->nlisten; i++) {
        if (conf->listen[i].tls) {
            fprintf(out,
                    "gateway.listen[%zu].tls: TLS termination is not available in this build\n", i);
            errors++;
        }
    }
    /* the parsing exists, the clients not yet: refuse rather than run against one node */
    if (conf->has_redis && conf->redis_type != GW_REDIS_NODE) {
        fprintf(out, "redis.type: %s is not available in this build\n",
                conf->redis_type == GW_REDIS_CLUSTER ? "cluster" : "sentinel");
        errors++;
    }
    /* plugin names and configs, checked against each plugin's schema */
    errors += gw_lua_check(conf, out);
    return errors;
}

/* Warnings leave the config valid: -t prints them, start and reload log them. */
static void
log_warnings(const gw_conf_t *conf, gw_log_t *log)
{
    for (size_t i = 0; i < conf->nwarnings; i++)
        gw_log(log, GW_LOG_WARN, "config: %s", conf->warnings[i]);
}

static int
find_slot(worker_proc_t *ws, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (ws[i].pid == pid)
            return i;
    return -1;
}

static int
alive(master_t *m)
{
    int n = 0;
    for (int i = 0; i < m->nworkers; i++)
        n += (m->workers[i].pid > 0) + (m->old[i].pid > 0);
    return n;
}

static void
reap(master_t *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == m->disc.pid) {
            m->disc.pid = 0;
            if (m->stopping)
                continue;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
                /* it read another config than ours at a reload: hand over */
                spawn_disc(m);
                continue;
            }
            gw_log(m->log, GW_LOG_ERROR, "discovery process (pid %d) %s %d; restarting", (int)pid,
                   WIFSIGNALED(status) ? "killed by signal" : "exited with status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            if (time(NULL) - m->disc.started < 1)
                sleep(1);
            spawn_disc(m);
            continue;
        }
        int slot = find_slot(m->old, m->nworkers, pid);
        if (slot >= 0) {
            m->old[slot].pid = 0;
            continue;
        }
        slot = find_slot(m->workers, m->nworkers, pid);
        if (slot < 0)
            continue;
        m->workers[slot].pid = 0;
        if (m->stopping)
            continue;
        if (WIFSIGNALED(status))
            gw_log(m->log, GW_LOG_ERROR, "worker %d (pid %d) killed by signal %d; restarting", slot,
                   (int)pid, WTERMSIG(status));
        else
            gw_log(m->log, GW_LOG_ERROR, "worker %d (pid %d) exited with status %d; restarting",
                   slot, (int)pid, WEXITSTATUS(status));
        gw_metrics_worker_reset(m->metrics, slot);
        /* a worker that dies at once would otherwise spin the master */
        if (time(NULL) - m->workers[slot].started < 1)
            sleep(1);
        spawn(m, slot);
    }
}

static void
signal_workers(worker_proc_t *ws, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (ws[i].pid > 0)
            kill(ws[i].pid, sig);
}

static void
reload(master_t *m)
{
    gw_conf_errors_t errs = {0};
    gw_conf_t *nc = gw_conf_load(m->conf->file, &errs);
    if (nc == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "reload failed, keeping the running configuration:");
        for (size_t i = 0; i < errs.n; i++)
            gw_log(m->log, GW_LOG_ERROR, "  %s", errs.lines[i]);
        gw_conf_errors_free(&errs);
        return;
    }
    if (check_supported(nc, stderr) > 0) {
        gw_log(m->log, GW_LOG_ERROR,
               "reload failed (see above), keeping the running "
               "configuration");
        gw_conf_free(nc);
        return;
    }
    log_warnings(nc, m->log);
    int same = nc->workers == m->nworkers && (int)nc->nlisten == m->nlisten &&
               nc->has_status_listen == m->conf->has_status_listen;
    for (size_t i = 0; same && i < nc->nlisten; i++)
        same = nc->listen[i].salen == m->conf->listen[i].salen &&
               memcmp(&nc->listen[i].sa, &m->conf->listen[i].sa, nc->listen[i].salen) == 0;
    if (!same) {
        gw_log(m->log, GW_LOG_ERROR,
               "reload refused: listen addresses and workers can only "
               "change with a restart; keeping the running configuration");
        gw_conf_free(nc);
        return;
    }
    if (alive(m) > m->nworkers) {
        gw_log(m->log, GW_LOG_WARN, "reload refused: the previous reload is still draining");
        gw_conf_free(nc);
        return;
    }
    gw_metrics_t *nm = gw_metrics_new(nc, m->nworkers);
    if (nm == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "reload failed: cannot map metrics");
        gw_conf_free(nc);
        return;
    }
    /* old workers keep their config pages (copy-on-write) after fork; the
     * master frees its copy once they are gone */
    if (m->old_conf)
        gw_conf_free(m->old_conf);
    if (m->old_metrics)
        gw_metrics_free(m->old_metrics);
    memcpy(m->old, m->workers, sizeof(m->workers));
    m->old_conf = m->conf;
    m->old_metrics = m->metrics;
    m->conf = nc;
    m->metrics = nm;
    m->generation++;
    reload_disc(m);
    for (int s = 0; s < m->nworkers; s++)
        spawn(m, s);
    signal_workers(m->old, m->nworkers, SIGTERM);
    gw_log(m->log, GW_LOG_INFO, "reloaded %s (generation %d)", nc->file, m->generation);
}

static int
master_loop(master_t *m)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    time_t deadline = 0;
    for (;;) {
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGCHLD || sig < 0)
            reap(m);
        if (sig == SIGHUP && !m->stopping)
            reload(m);
        if (sig == SIGUSR1) {
            gw_log_reopen(m->log);
            signal_workers(m->workers, m->nworkers, SIGUSR1);
            if (m->disc.pid > 0)
                kill(m->disc.pid, SIGUSR1);
        }
        if ((sig == SIGTERM || sig == SIGQUIT || sig == SIGINT) && !m->stopping) {
            m->stopping = 1;
            gw_sdnotify("STOPPING=1");
            gw_log(m->log, GW_LOG_INFO, "stopping: draining workers");
            signal_workers(m->workers, m->nworkers, SIGTERM);
            signal_workers(m->old, m->nworkers, SIGTERM);
            stop_disc(m);
            deadline = time(NULL) + (time_t)(m->conf->drain_timeout_ms / 1000) + 5;
        }
        if (m->stopping) {
            reap(m);
            if (alive(m) == 0)
                return 0;
            if (time(NULL) > deadline) {
                gw_log(m->log, GW_LOG_ERROR, "workers did not stop in time: killing");
                signal_workers(m->workers, m->nworkers, SIGKILL);
                signal_workers(m->old, m->nworkers, SIGKILL);
                deadline = time(NULL) + 5;
            }
        }
        if (m->old_conf && alive(m) == m->nworkers) {
            int any_old = 0;
            for (int i = 0; i < m->nworkers; i++)
                any_old |= m->old[i].pid > 0;
            if (!any_old) {
                gw_conf_free(m->old_conf);
                gw_metrics_free(m->old_metrics);
                m->old_conf = NULL;
                m->old_metrics = NULL;
            }
        }
    }
}

int
main(int argc, char **argv)
{
    const char *file = "conf/gateway.yaml", *sigarg = NULL;
    int test = 0, discover = 0, opt;
    while ((opt = getopt(argc, argv, "c:tds:vh")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'd':
            discover = 1;
            break;
        case 's':
            sigarg = optarg;
            break;
        case 'v':
            printf("gateway %s\n", GW_VERSION_STR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 1;
    }
    gw_conf_errors_t errs = {0};
    gw_conf_t *conf = gw_conf_load(file, &errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        if (test)
            fprintf(stderr, "configuration test failed\n");
        gw_conf_errors_free(&errs);
        return 1;
    }
    if (discover) {
        char err[256];
        gw_log_t *log = gw_log_open("stderr", conf->error_log_level, err, sizeof(err));
        if (log == NULL) {
            fprintf(stderr, "gateway: %s\n", err);
            gw_conf_free(conf);
            return 1;
        }
        gw_log_set_tag(log, "discovery");
        int rc = gw_disc_source_count(conf) == 0 ? 1 : gw_disc_print(conf, log);
        if (rc != 0 && gw_disc_source_count(conf) == 0)
            fprintf(stderr, "gateway: no upstream of %s has discovery\n", conf->file);
        gw_log_close(log);
        gw_conf_free(conf);
        return rc;
    }
    if (check_supported(conf, stderr) > 0) {
        if (test)
            fprintf(stderr, "configuration test failed\n");
        gw_conf_free(conf);
        return 1;
    }
    if (test) {
        for (size_t i = 0; i < conf->nwarnings; i++)
            fprintf(stderr, "warning: %s\n", conf->warnings[i]);
        printf("configuration OK\n");
        gw_conf_free(conf);
        return 0;
    }
    if (sigarg) {
        int rc = signal_master(conf, sigarg);
        gw_conf_free(conf);
        return rc;
    }

    static master_t m; /* lives as long as the process */
    char err[256];
    m.conf = conf;
    m.log = gw_log_open(conf->error_log, conf->error_log_level, err, sizeof(err));
    if (m.log == NULL) {
        fprintf(stderr, "gateway: error log: %s\n", err);
        return 1;
    }
    gw_log_set_tag(m.log, "master");
    log_warnings(conf, m.log);
    m.nworkers = conf->workers < 1 ? 1 : conf->workers > MAX_WORKERS ? MAX_WORKERS : conf->workers;
    if (open_listeners(&m) != 0)
        return 1;
    m.metrics = gw_metrics_new(conf, m.nworkers);
    if (m.metrics == NULL) {
        gw_log(m.log, GW_LOG_ERROR, "cannot map shared metrics");
        return 1;
    }
    m.disc_shm = gw_disc_shm_new(conf);
    if (m.disc_shm == NULL && gw_disc_source_count(conf) > 0) {
        gw_log(m.log, GW_LOG_ERROR, "cannot map the discovery segment");
        return 1;
    }
    m.shared.shstate = gw_shstate_new(0, 0);
    if (m.shared.shstate == NULL)
        gw_log(m.log, GW_LOG_WARN, "cannot map the shared state: each worker decides alone");
    if (write_pid_file(&m) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    spawn_disc(&m);
    for (int s = 0; s < m.nworkers; s++)
        spawn(&m, s);
    gw_log(m.log, GW_LOG_INFO, "gateway %s started: %d worker(s), %d listener(s)", GW_VERSION_STR,
           m.nworkers, m.nlisten);
    if (gw_sdnotify("READY=1") < 0) /* systemd's Type=notify: the listeners queue already */
        gw_log(m.log, GW_LOG_WARN, "cannot notify systemd at $NOTIFY_SOCKET: %s", strerror(errno));
    int rc = master_loop(&m);
    unlink(m.conf->pid_file);
    gw_log(m.log, GW_LOG_INFO, "stopped");
    stop_disc(&m);
    gw_disc_shm_free(m.disc_shm);
    gw_shstate_free(m.shared.shstate);
    gw_metrics_free(m.metrics);
    gw_conf_free(m.conf);
    gw_log_close(m.log);
    return rc;
}
