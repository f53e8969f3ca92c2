/*
 * The master process.
 *
 * It loads the config, opens every listening socket once, forks the
 * workers and the discovery process, then only waits for signals and
 * watches its children:
 *
 * - One socket per address, shared by every worker of every generation
 *   (no SO_REUSEPORT group per worker). Sockets are keyed by address: a
 *   reload keeps the sockets of addresses that stay (never closed, so no
 *   connection waiting in an accept queue is lost), opens the new ones and
 *   closes the ones no longer listed. Because no socket belongs to one
 *   worker, a new worker count opens or closes nothing.
 * - SIGHUP (and -s reload) applies any config change: a new generation of
 *   workers starts on the new config, the previous generations drain
 *   (their in-flight requests finish, keep-alive gets Connection: close,
 *   at most timeouts.drain). A config that does not load, check, or whose
 *   new addresses cannot be bound is refused and the running one stays.
 * - SIGUSR2 (-s upgrade) starts the binary again (same path, same
 *   arguments) as a child that inherits the listening sockets (their
 *   numbers in GW_LISTEN_FDS); this master keeps running with its workers
 *   until SIGQUIT/SIGTERM, so QUIT to the new one rolls back.
 * - The watchdog: a worker whose loop has not turned for gateway.watchdog
 *   is killed and replaced (gw_watchdog.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_disc.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_master.h"
#include "gw_metrics.h"
#include "gw_sdnotify.h"
#include "gw_shstate.h"
#include "gw_tls.h"
#include "gw_watchdog.h"
#include "gw_worker.h"

#define MAX_WORKERS 256
#define MAX_PROCS 1024 /* the workers of the current and the draining generations */
#define MAX_SOCKS 64
#define INHERIT_ENV "GW_LISTEN_FDS"
#define SECRET_ENV "GW_TLS_SECRET_FD" /* a pipe holding the TLS ticket secret */

/* One generation: the workers started from one config. */
typedef struct gen_s {
    int id;
    gw_conf_t *conf;
    gw_metrics_t *metrics;
    int nworkers;
    int *fds; /* [i]: the socket of conf->listen[i]; the socket table owns them */
    int status_fd;
    int admin_fd; /* -1: no admin API; worker 0 serves it */
    int nlive;
    struct gen_s *next;
} gen_t;

typedef struct {
    pid_t pid;
    gen_t *gen;
    int slot;
    time_t started;
    uint64_t beats;   /* the watchdog record's count when last seen moving */
    uint64_t seen_ms; /* when */
    int watchdogged;  /* killed by the watchdog */
} proc_t;

typedef struct {
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd;
    int keep; /* during a reload: the new config lists it */
} sock_t;

typedef struct {
    pid_t pid;
    time_t started;
} disc_proc_t;

typedef struct {
    gw_conf_t *conf; /* the current generation's */
    gw_log_t *log;
    gen_t *gens; /* newest first; gens->conf == conf */
    int next_gen;
    proc_t procs[MAX_PROCS];
    sock_t socks[MAX_SOCKS];
    int nsocks;
    gw_watchdog_t *watchdog;
    gw_shstate_t *shstate; /* health and breakers of every worker; NULL: per worker */
    /* TLS ticket keys derive from it (gw_tls.c): made once, kept across
     * reloads, so a ticket issued by any worker of any generation resumes */
    unsigned char tls_secret[32];
    int stopping;
    gw_disc_shm_t *disc_shm; /* NULL when no upstream has discovery */
    disc_proc_t disc;
    char exe[PATH_MAX]; /* for the upgrade */
    char **argv;
    pid_t upgrade_pid;   /* the new master while it runs, our child */
    int drain_pending;   /* old generations drain once the current one is ready */
    pid_t upgraded_from; /* the master that started us in an upgrade, 0 */
    char pid_path[PATH_MAX + 8];
} master_t;

/* ---- sockets ---- */

static int
same_addr(const sock_t *s, const gw_listen_conf_t *l)
{
    return s->salen == l->salen && memcmp(&s->sa, &l->sa, l->salen) == 0;
}

static int
open_listener(const gw_listen_conf_t *l, char *err, size_t errlen)
{
    int fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) != 0 || listen(fd, 511) != 0) {
        snprintf(err, errlen, "%s:%d: %s", l->host, l->port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The socket of address L: the open one, or a new one. -1 with ERR when
 * it cannot be opened. Marks it kept. */
static int
sock_get(master_t *m, const gw_listen_conf_t *l, char *err, size_t errlen)
{
    for (int i = 0; i < m->nsocks; i++) {
        if (same_addr(&m->socks[i], l)) {
            m->socks[i].keep = 1;
            return m->socks[i].fd;
        }
    }
    if (m->nsocks == MAX_SOCKS) {
        snprintf(err, errlen, "%s:%d: more than %d listening sockets", l->host, l->port, MAX_SOCKS);
        return -1;
    }
    int fd = open_listener(l, err, errlen);
    if (fd < 0)
        return -1;
    sock_t *s = &m->socks[m->nsocks++];
    memcpy(&s->sa, &l->sa, l->salen);
    s->salen = l->salen;
    s->fd = fd;
    s->keep = 1;
    return fd;
}

/* Closes every socket not marked kept; with WAS_OPEN (which sockets were
 * open before a reload that failed half-way), every one opened since. */
static void
socks_sweep(master_t *m, const unsigned char *was_open)
{
    int n = 0;
    for (int i = 0; i < m->nsocks; i++) {
        sock_t *s = &m->socks[i];
        int drop = was_open ? !was_open[i] : !s->keep;
        if (drop) {
            close(s->fd);
            continue;
        }
        m->socks[n++] = *s;
    }
    m->nsocks = n;
}

/* Sockets a previous master passed on (GW_LISTEN_FDS="3;4;"): they join
 * the table with the address they are bound to; the config decides
 * which stay. */
static void
socks_inherit(master_t *m)
{
    const char *env = getenv(INHERIT_ENV);
    if (env == NULL)
        return;
    for (const char *p = env; *p;) {
        char *end;
        long fd = strtol(p, &end, 10);
        if (end == p)
            break;
        p = *end == ';' ? end + 1 : end;
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int listening = 0;
        socklen_t ilen = sizeof(listening);
        if (fd < 0 || fd > INT_MAX || getsockname((int)fd, (struct sockaddr *)&sa, &len) != 0) {
            gw_log(m->log, GW_LOG_WARN, "%s: fd %ld is not a socket; ignored", INHERIT_ENV, fd);
            continue;
        }
        if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) != 0 || !listening ||
            m->nsocks == MAX_SOCKS) {
            /* a socket the old master passed that we cannot use: not kept
             * open for the life of this one */
            gw_log(m->log, GW_LOG_WARN, "%s: fd %ld is not a listening socket we can use; closed",
                   INHERIT_ENV, fd);
            close((int)fd);
            continue;
        }
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        sock_t *s = &m->socks[m->nsocks++];
        s->sa = sa;
        s->salen = len;
        s->fd = (int)fd;
    }
    unsetenv(INHERIT_ENV);
    m->upgraded_from = getppid();
    gw_log(m->log, GW_LOG_INFO, "inherited %d listening socket(s)", m->nsocks);
}

/*
 * The TLS ticket secret goes to the new master of an upgrade through a
 * pipe (its number in SECRET_ENV), not the environment, which other
 * processes of the same user can read: tickets issued before an upgrade
 * then resume after it. In the child, just before exec.
 */
static void
secret_hand_over(master_t *m)
{
    int p[2];
    if (pipe(p) != 0)
        return;
    char num[16];
    if (write(p[1], m->tls_secret, sizeof(m->tls_secret)) == (ssize_t)sizeof(m->tls_secret)) {
        snprintf(num, sizeof(num), "%d", p[0]);
        setenv(SECRET_ENV, num, 1);
    } else {
        close(p[0]);
    }
    close(p[1]);
}

/* In the new master: the secret handed over, 0; -1 when there is none. */
static int
secret_inherit(master_t *m)
{
    const char *env = getenv(SECRET_ENV);
    if (env == NULL)
        return -1;
    int fd = atoi(env);
    unsetenv(SECRET_ENV);
    if (fd <= 2)
        return -1;
    ssize_t n = read(fd, m->tls_secret, sizeof(m->tls_secret));
    close(fd);
    if (n != (ssize_t)sizeof(m->tls_secret)) {
        gw_log(m->log, GW_LOG_WARN, "%s: no TLS ticket secret in it; a new one is made",
               SECRET_ENV);
        return -1;
    }
    return 0;
}

/* Every socket conf needs, in GEN; 0, or -1 after logging why. */
static int
gen_bind(master_t *m, gen_t *g)
{
    char err[256];
    const gw_conf_t *conf = g->conf;
    g->fds = calloc(conf->nlisten + 1, sizeof(int));
    if (g->fds == NULL)
        return -1;
    for (size_t i = 0; i < conf->nlisten; i++) {
        if ((g->fds[i] = sock_get(m, &conf->listen[i], err, sizeof(err))) < 0) {
            gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s", err);
            return -1;
        }
    }
    g->status_fd = -1;
    if (conf->has_status_listen &&
        (g->status_fd = sock_get(m, &conf->status_listen, err, sizeof(err))) < 0) {
        gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s (status_listen)", err);
        return -1;
    }
    g->admin_fd = -1;
    if (conf->has_admin) {
        if ((g->admin_fd = sock_get(m, &conf->admin_listen, err, sizeof(err))) < 0) {
            gw_log(m->log, GW_LOG_ERROR, "cannot listen on %s (gateway.admin)", err);
            return -1;
        }
        gw_log(m->log, GW_LOG_INFO, "admin API on %s:%d (served by worker 0)",
               conf->admin_listen.host, conf->admin_listen.port);
    }
    return 0;
}

/* ---- generations and processes ---- */

static gen_t *
gen_new(master_t *m, gw_conf_t *conf)
{
    gen_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->conf = conf;
    g->nworkers = conf->workers < 1 ? 1 : conf->workers > MAX_WORKERS ? MAX_WORKERS : conf->workers;
    g->id = m->next_gen++;
    g->status_fd = -1;
    g->admin_fd = -1;
    return g;
}

static void
gen_free(gen_t *g)
{
    if (g == NULL)
        return;
    gw_metrics_free(g->metrics);
    gw_conf_free(g->conf);
    free(g->fds);
    free(g);
}

/* Frees the old generations whose workers are all gone. */
static void
gens_collect(master_t *m)
{
    gen_t **pp = &m->gens->next;
    while (*pp) {
        gen_t *g = *pp;
        if (g->nlive > 0) {
            pp = &g->next;
            continue;
        }
        *pp = g->next;
        gen_free(g);
    }
}

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static proc_t *
find_proc(master_t *m, pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid == pid)
            return &m->procs[i];
    return NULL;
}

static int
nprocs(master_t *m)
{
    int n = 0;
    for (int i = 0; i < MAX_PROCS; i++)
        n += m->procs[i].pid > 0;
    return n;
}

static void
unblock_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In a new worker: every listening socket its generation does not use is
 * closed, so that a socket the master closes later (an address a reload
 * removed) is not kept listening, unanswered, by this worker. */
static void
close_foreign_socks(const master_t *m, const gen_t *g, int slot)
{
    for (int i = 0; i < m->nsocks; i++) {
        int fd = m->socks[i].fd, used = fd == g->status_fd || (fd == g->admin_fd && slot == 0);
        for (size_t j = 0; j < g->conf->nlisten && !used; j++)
            used = fd == g->fds[j];
        if (!used)
            close(fd);
    }
}

static pid_t
spawn(master_t *m, gen_t *g, int slot)
{
    proc_t *p = find_proc(m, 0);
    if (p == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "more than %d worker processes: worker %d not started",
               MAX_PROCS, slot);
        return -1;
    }
    size_t idx = (size_t)(p - m->procs);
    gw_watchdog_rec_t *watch = gw_watchdog_take(m->watchdog, idx);
    pid_t pid = fork();
    if (pid < 0) {
        gw_log(m->log, GW_LOG_ERROR, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        unblock_signals();
        close_foreign_socks(m, g, slot);
        memcpy(g->conf->tls.ticket_secret, m->tls_secret, sizeof(m->tls_secret));
        gw_worker_shared_t shared = {.admin_fd = slot == 0 ? g->admin_fd : -1,
                                     .shstate = m->shstate};
        int rc = gw_worker_run(g->conf, slot, g->nworkers, g->fds, g->conf->nlisten, g->status_fd,
                               g->metrics, m->disc_shm, m->log, &shared, watch);
        _exit(rc);
    }
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->gen = g;
    p->slot = slot;
    p->started = time(NULL);
    p->seen_ms = now_ms();
    g->nlive++;
    return pid;
}

static void
signal_gen(master_t *m, const gen_t *g, int sig)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && (g == NULL || m->procs[i].gen == g))
            kill(m->procs[i].pid, sig);
}

/* Every generation but the current one. */
static void
signal_old(master_t *m, int sig)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].gen != m->gens)
            kill(m->procs[i].pid, sig);
}

/* ---- the discovery process ---- */

/* The watchers of every registry, once per instance (gw_disc.h).
 * Re-spawned like a worker when it dies; the lists it published stay in
 * the segment meanwhile. */
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
        unblock_signals();
        for (int i = 0; i < m->nsocks; i++)
            close(m->socks[i].fd);
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

/* ---- pid file ---- */

static int
write_pid(const char *path)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0755); /* "logs/" may not exist on a fresh checkout */
    }
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return 0;
}

static int
read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid;
}

/* Removes our pid file, wherever it is now, if it still names us. */
static void
remove_pid(master_t *m)
{
    if (read_pid(m->pid_path) == (int)getpid())
        unlink(m->pid_path);
}

/* ---- checks ---- */

int
gw_master_check(gw_conf_t *conf, FILE *out)
{
    /* TLS files are read here (the YAML only names them) */
    int errors = gw_tls_check(conf, out);
    /* plugin names and configs, checked against each plugin's schema */
    errors += gw_lua_check(conf, out);
    return errors;
}

/* Loads and checks FILE; NULL with *errors (malloc'd lines) on failure. */
static gw_conf_t *
load_checked(const char *file, char **errors)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    gw_conf_errors_t errs = {0};
    gw_conf_t *conf = NULL;
    *errors = NULL;
    if (out == NULL)
        return NULL;
    conf = gw_conf_load(file, &errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(out, "%s\n", errs.lines[i]);
        if (errs.n == 0)
            fprintf(out, "%s: cannot be loaded\n", file);
        gw_conf_errors_free(&errs);
    } else if (gw_master_check(conf, out) > 0) {
        gw_conf_free(conf);
        conf = NULL;
    }
    fclose(out);
    if (conf != NULL) {
        free(text);
        return conf;
    }
    *errors = text;
    return NULL;
}

char *
gw_master_check_file(const char *file)
{
    char *errors;
    gw_conf_t *conf = load_checked(file, &errors);
    gw_conf_free(conf);
    return errors;
}

/* Warnings leave the config valid: -t prints them, start and reload log them. */
static void
log_warnings(const gw_conf_t *conf, gw_log_t *log)
{
    for (size_t i = 0; i < conf->nwarnings; i++)
        gw_log(log, GW_LOG_WARN, "config: %s", conf->warnings[i]);
}

static void
log_lines(gw_log_t *log, const char *text)
{
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        int n = nl ? (int)(nl - text) : (int)strlen(text);
        gw_log(log, GW_LOG_ERROR, "  %.*s", n, text);
        text += n + (nl != NULL);
    }
}

/* ---- reload ---- */

static void
reload(master_t *m)
{
    char *errors;
    gw_conf_t *nc = load_checked(m->conf->file, &errors);
    if (nc == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "reload failed, keeping the running configuration:");
        log_lines(m->log, errors);
        free(errors);
        return;
    }
    log_warnings(nc, m->log);
    gen_t *g = gen_new(m, nc);
    if (g == NULL) {
        gw_log(m->log, GW_LOG_ERROR, "reload failed: out of memory");
        gw_conf_free(nc);
        return;
    }
    if (nprocs(m) + g->nworkers > MAX_PROCS) {
        gw_log(m->log, GW_LOG_ERROR,
               "reload refused: %d worker processes still draining; keeping the running "
               "configuration",
               nprocs(m));
        gen_free(g);
        return;
    }
    unsigned char was_open[MAX_SOCKS] = {0};
    for (int i = 0; i < m->nsocks; i++) {
        was_open[i] = 1;
        m->socks[i].keep = 0;
    }
    g->metrics = gw_metrics_new(nc, g->nworkers);
    if (g->metrics == NULL || gen_bind(m, g) != 0) {
        if (g->metrics == NULL)
            gw_log(m->log, GW_LOG_ERROR, "reload failed: cannot map metrics");
        gw_log(m->log, GW_LOG_ERROR, "reload failed, keeping the running configuration");
        socks_sweep(m, was_open); /* only what this attempt opened */
        gen_free(g);
        return;
    }
    gw_metrics_restarts_carry(g->metrics, m->gens->metrics);
    /* Addresses no longer listed: closed here before the new workers fork
     * (they must not inherit them); the old workers close their copies as
     * they start draining, and then the port refuses. */
    socks_sweep(m, NULL);
    g->next = m->gens;
    m->gens = g;
    m->conf = nc;
    reload_disc(m);
    for (int s = 0; s < g->nworkers; s++)
        spawn(m, g, s);
    m->drain_pending = 1;
    gw_log(m->log, GW_LOG_INFO, "reloaded %s (generation %d: %d worker(s), %zu listener(s))",
           nc->file, g->id, g->nworkers, nc->nlisten);
}

/* The old generations keep accepting until every worker of the new one
 * has set up (its Lua VM, pools, listeners): a reload never leaves a
 * moment with nobody accepting. A new worker that fails its set-up is
 * re-spawned meanwhile, and the old ones serve on. */
static void
drain_when_ready(master_t *m)
{
    if (!m->drain_pending)
        return;
    int ready = 0;
    for (int i = 0; i < MAX_PROCS; i++) {
        proc_t *p = &m->procs[i];
        if (p->pid > 0 && p->gen == m->gens &&
            gw_watchdog_ready(gw_watchdog_record(m->watchdog, (size_t)i)))
            ready++;
    }
    if (ready < m->gens->nworkers)
        return;
    m->drain_pending = 0;
    signal_old(m, SIGTERM);
}

/* A slot of the current generation without a worker (its fork failed,
 * or the process table was full) gets one; reap() replaces the ones that
 * die. */
static void
fill_slots(master_t *m)
{
    unsigned char have[MAX_WORKERS] = {0};
    gen_t *g = m->gens;
    for (int i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].gen == g)
            have[m->procs[i].slot] = 1;
    for (int s = 0; s < g->nworkers; s++)
        if (!have[s])
            spawn(m, g, s);
}

/* ---- binary upgrade ---- */

static void
upgrade(master_t *m)
{
    if (m->upgrade_pid > 0) {
        gw_log(m->log, GW_LOG_WARN, "upgrade refused: the new master (pid %d) is still running",
               (int)m->upgrade_pid);
        return;
    }
    /* one .oldbin at a time: while the master we replaced still runs, an
     * upgrade from here would take its pid file's place */
    if (m->upgraded_from > 1 && getppid() == m->upgraded_from) {
        gw_log(m->log, GW_LOG_WARN,
               "upgrade refused: the previous master (pid %d) still runs; QUIT it first",
               (int)m->upgraded_from);
        return;
    }
    char env[MAX_SOCKS * 12 + 1] = "";
    size_t off = 0;
    for (int i = 0; i < m->nsocks; i++)
        off += (size_t)snprintf(env + off, sizeof(env) - off, "%d;", m->socks[i].fd);
    char old[PATH_MAX + 8];
    snprintf(old, sizeof(old), "%s.oldbin", m->conf->pid_file);
    if (rename(m->conf->pid_file, old) != 0)
        gw_log(m->log, GW_LOG_WARN, "upgrade: pid file %s: %s", m->conf->pid_file, strerror(errno));
    else
        snprintf(m->pid_path, sizeof(m->pid_path), "%s", old);
    pid_t pid = fork();
    if (pid < 0) {
        gw_log(m->log, GW_LOG_ERROR, "upgrade: fork: %s", strerror(errno));
        rename(old, m->conf->pid_file);
        snprintf(m->pid_path, sizeof(m->pid_path), "%s", m->conf->pid_file);
        return;
    }
    if (pid == 0) {
        unblock_signals();
        for (int i = 0; i < m->nsocks; i++)
            fcntl(m->socks[i].fd, F_SETFD, 0);
        setenv(INHERIT_ENV, env, 1);
        secret_hand_over(m);
        execv(m->exe, m->argv);
        fprintf(stderr, "gateway: upgrade: exec %s: %s\n", m->exe, strerror(errno));
        _exit(127);
    }
    m->upgrade_pid = pid;
    gw_log(m->log, GW_LOG_INFO,
           "upgrade: started %s as pid %d with %d listening socket(s); this master keeps "
           "serving until SIGQUIT",
           m->exe, (int)pid, m->nsocks);
}

/* The new master exited while we run: the upgrade failed or was rolled
 * back; we are the master again and the pid file comes back. */
static void
upgrade_ended(master_t *m, int status)
{
    gw_log(m->log, WIFEXITED(status) && WEXITSTATUS(status) == 0 ? GW_LOG_INFO : GW_LOG_ERROR,
           "upgrade: the new master (pid %d) %s %d; this master stays", (int)m->upgrade_pid,
           WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    m->upgrade_pid = 0;
    if (strcmp(m->pid_path, m->conf->pid_file) != 0) {
        if (rename(m->pid_path, m->conf->pid_file) == 0)
            snprintf(m->pid_path, sizeof(m->pid_path), "%s", m->conf->pid_file);
    }
}

/* ---- children ---- */

static void
watchdog_name(const gw_conf_t *conf, int route, int plugin, char *out, size_t len)
{
    const char *rname = "(no route)", *pname = "(none)";
    if (route > 0 && (size_t)route <= conf->nroutes)
        rname = conf->routes[route - 1].name ? conf->routes[route - 1].name : "(unnamed)";
    if (plugin > 0) {
        size_t k = (size_t)plugin - 1;
        if (k < conf->nglobal_plugins)
            pname = conf->global_plugins[k].name;
        else if (route > 0 && (size_t)route <= conf->nroutes &&
                 k - conf->nglobal_plugins < conf->routes[route - 1].nplugins)
            pname = conf->routes[route - 1].plugins[k - conf->nglobal_plugins].name;
    }
    snprintf(out, len, "route \"%s\", plugin \"%s\"", rname, pname);
}

/* Kills the workers whose loop stood still for gateway.watchdog; reap()
 * starts their replacement. */
static void
watchdog_check(master_t *m)
{
    uint64_t now = now_ms();
    for (int i = 0; i < MAX_PROCS; i++) {
        proc_t *p = &m->procs[i];
        uint64_t limit = p->pid > 0 ? p->gen->conf->watchdog_ms : 0;
        if (limit == 0 || p->watchdogged)
            continue;
        const gw_watchdog_rec_t *rec = gw_watchdog_record(m->watchdog, (size_t)i);
        uint64_t beats = gw_watchdog_beats(rec);
        if (beats != p->beats) {
            p->beats = beats;
            p->seen_ms = now;
            continue;
        }
        /* start-up (the Lua VM, plugins) gets at least 10 s */
        if (beats == 0 && limit < 10000)
            limit = 10000;
        if (now - p->seen_ms < limit)
            continue;
        int route, plugin;
        char what[512];
        gw_watchdog_running(rec, &route, &plugin);
        watchdog_name(p->gen->conf, route, plugin, what, sizeof(what));
        gw_log(m->log, GW_LOG_ERROR,
               "watchdog: worker %d (pid %d) has not turned its loop for %llu ms, in %s: "
               "killing it",
               p->slot, (int)p->pid, (unsigned long long)(now - p->seen_ms), what);
        p->watchdogged = 1;
        kill(p->pid, SIGKILL);
    }
}

static void
reap_disc(master_t *m, pid_t pid, int status)
{
    m->disc.pid = 0;
    if (m->stopping)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        /* it read another config than ours at a reload: hand over */
        spawn_disc(m);
        return;
    }
    gw_log(m->log, GW_LOG_ERROR, "discovery process (pid %d) %s %d; restarting", (int)pid,
           WIFSIGNALED(status) ? "killed by signal" : "exited with status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    if (time(NULL) - m->disc.started < 1)
        sleep(1);
    spawn_disc(m);
}

static void
reap(master_t *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == m->disc.pid) {
            reap_disc(m, pid, status);
            continue;
        }
        if (pid == m->upgrade_pid) {
            upgrade_ended(m, status);
            continue;
        }
        proc_t *p = find_proc(m, pid);
        if (p == NULL)
            continue;
        proc_t dead = *p;
        memset(p, 0, sizeof(*p));
        dead.gen->nlive--;
        if (dead.watchdogged) /* a draining one too: it was stuck all the same */
            gw_metrics_worker_restart(m->gens->metrics, GW_METRICS_RESTART_WATCHDOG);
        if (m->stopping || dead.gen != m->gens)
            continue;
        gen_t *g = dead.gen;
        if (!dead.watchdogged) {
            gw_metrics_worker_restart(g->metrics, GW_METRICS_RESTART_DIED);
            if (WIFSIGNALED(status))
                gw_log(m->log, GW_LOG_ERROR, "worker %d (pid %d) killed by signal %d; restarting",
                       dead.slot, (int)pid, WTERMSIG(status));
            else
                gw_log(m->log, GW_LOG_ERROR, "worker %d (pid %d) exited with status %d; restarting",
                       dead.slot, (int)pid, WEXITSTATUS(status));
            /* a worker that dies at once would otherwise spin the master */
            if (time(NULL) - dead.started < 1)
                sleep(1);
        }
        gw_metrics_worker_reset(g->metrics, dead.slot);
        spawn(m, g, dead.slot);
    }
}

static void
begin_stop(master_t *m, int sig)
{
    m->stopping = 1;
    gw_sdnotify("STOPPING=1");
    gw_log(m->log, GW_LOG_INFO, "stopping (signal %d): draining workers", sig);
    signal_gen(m, NULL, SIGTERM);
    stop_disc(m);
}

static void
block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
    sigprocmask(SIG_BLOCK, set, NULL);
}

static int
master_loop(master_t *m)
{
    sigset_t set;
    block_signals(&set);
    time_t deadline = 0;
    for (;;) {
        /* the watchdog looks 10 times per period, at least every 250 ms */
        long tick = 250;
        if (m->conf->watchdog_ms && (long)(m->conf->watchdog_ms / 10) < tick)
            tick = (long)(m->conf->watchdog_ms / 10);
        if (m->drain_pending)
            tick = 10; /* new workers come up within milliseconds */
        struct timespec ts = {0, tick * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGCHLD || sig < 0)
            reap(m);
        if (sig == SIGHUP && !m->stopping)
            reload(m);
        if (sig == SIGUSR2 && !m->stopping)
            upgrade(m);
        if (sig == SIGUSR1) {
            gw_log_reopen(m->log);
            signal_gen(m, NULL, SIGUSR1);
            if (m->disc.pid > 0)
                kill(m->disc.pid, SIGUSR1);
        }
        if ((sig == SIGTERM || sig == SIGQUIT || sig == SIGINT) && !m->stopping) {
            begin_stop(m, sig);
            deadline = time(NULL) + (time_t)(m->conf->drain_timeout_ms / 1000) + 5;
        }
        if (!m->stopping) {
            fill_slots(m);
            drain_when_ready(m);
            watchdog_check(m);
        }
        if (m->stopping) {
            reap(m);
            if (nprocs(m) == 0)
                return 0;
            if (time(NULL) > deadline) {
                gw_log(m->log, GW_LOG_ERROR, "workers did not stop in time: killing");
                signal_gen(m, NULL, SIGKILL);
                deadline = time(NULL) + 5;
            }
        }
        gens_collect(m);
    }
}

/* The binary's path as started, for the upgrade: a new file installed
 * at that path is what runs next (/proc/self/exe would name the old,
 * possibly deleted, one). */
static void
find_exe(master_t *m, char **argv)
{
    if (argv && argv[0] && strchr(argv[0], '/') && realpath(argv[0], m->exe) != NULL)
        return;
    ssize_t n = readlink("/proc/self/exe", m->exe, sizeof(m->exe) - 1);
    m->exe[n > 0 ? n : 0] = '\0';
}

int
gw_master_run(gw_conf_t *conf, const char *version, char **argv)
{
    static master_t m; /* lives as long as the process */
    char err[256];
    m.conf = conf;
    m.argv = argv;
    m.log = gw_log_open(conf->error_log, conf->error_log_level, err, sizeof(err));
    if (m.log == NULL) {
        fprintf(stderr, "gateway: error log: %s\n", err);
        return 1;
    }
    gw_log_set_tag(m.log, "master");
    /* Blocked before the first socket listens: a client (or a supervisor)
     * that sees the port open may signal at once, and a TERM then must
     * stop the gateway cleanly, not kill it by the default action. */
    sigset_t set;
    block_signals(&set);
    signal(SIGPIPE, SIG_IGN);
    find_exe(&m, argv);
    log_warnings(conf, m.log);
    socks_inherit(&m);
    for (int i = 0; i < m.nsocks; i++)
        m.socks[i].keep = 0;
    gen_t *g = gen_new(&m, conf);
    if (g == NULL || gen_bind(&m, g) != 0)
        return 1;
    /* Written once the sockets are bound, not before: a second start on
     * the same addresses fails above and leaves the running one's file. */
    snprintf(m.pid_path, sizeof(m.pid_path), "%s", conf->pid_file);
    if (write_pid(m.pid_path) != 0) {
        gw_log(m.log, GW_LOG_ERROR, "pid file %s: %s", m.pid_path, strerror(errno));
        return 1;
    }
    socks_sweep(&m, NULL); /* inherited sockets this config does not list */
    m.gens = g;
    g->metrics = gw_metrics_new(conf, g->nworkers);
    m.watchdog = gw_watchdog_new(MAX_PROCS);
    if (g->metrics == NULL || m.watchdog == NULL) {
        gw_log(m.log, GW_LOG_ERROR, "cannot map shared memory (metrics, watchdog)");
        remove_pid(&m);
        return 1;
    }
    m.disc_shm = gw_disc_shm_new(conf);
    if (m.disc_shm == NULL && gw_disc_source_count(conf) > 0) {
        gw_log(m.log, GW_LOG_ERROR, "cannot map the discovery segment");
        remove_pid(&m);
        return 1;
    }
    /* for the master's whole life: new generations keep the health and
     * breaker state of the nodes they share with the old ones */
    m.shstate = gw_shstate_new(0, 0);
    if (m.shstate == NULL)
        gw_log(m.log, GW_LOG_WARN, "cannot map the shared state: each worker decides alone");
    if (secret_inherit(&m) != 0 && gw_tls_new_secret(m.tls_secret) != GW_OK) {
        gw_log(m.log, GW_LOG_ERROR, "cannot make the TLS ticket secret");
        remove_pid(&m);
        return 1;
    }
    spawn_disc(&m);
    for (int s = 0; s < g->nworkers; s++)
        spawn(&m, g, s);
    gw_log(m.log, GW_LOG_INFO, "gateway %s started: %d worker(s), %zu listener(s)", version,
           g->nworkers, conf->nlisten);
    if (gw_sdnotify("READY=1") < 0) /* systemd's Type=notify: the listeners queue already */
        gw_log(m.log, GW_LOG_WARN, "cannot notify systemd at $NOTIFY_SOCKET: %s", strerror(errno));
    int rc = master_loop(&m);
    remove_pid(&m);
    gw_log(m.log, GW_LOG_INFO, "stopped");
    stop_disc(&m);
    gw_disc_shm_free(m.disc_shm);
    while (m.gens) {
        gen_t *next = m.gens->next;
        gen_free(m.gens);
        m.gens = next;
    }
    for (int i = 0; i < m.nsocks; i++)
        close(m.socks[i].fd);
    gw_watchdog_free(m.watchdog);
    gw_shstate_free(m.shstate);
    gw_log_close(m.log);
    return rc;
}
