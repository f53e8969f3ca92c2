/* The command line: -t, -d, -s, -v, or the master (gw_master.h). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_disc.h"
#include "gw_log.h"
#include "gw_master.h"

#define GW_VERSION_STR "0.1.0"

static void
usage(FILE *f)
{
    fprintf(f, "usage: gateway [-c FILE] [-t] [-d] [-s reload|stop|reopen|upgrade] [-v]\n"
               "  -c FILE   configuration (default conf/gateway.yaml)\n"
               "  -t        check the configuration and exit\n"
               "  -d        watch the registries of the configuration in the foreground and\n"
               "            print each node list and registry state change as a JSON line\n"
               "  -s SIG    signal the running master (its pid file): reload (SIGHUP),\n"
               "            stop (SIGTERM, graceful), reopen the logs (SIGUSR1) or\n"
               "            upgrade (SIGUSR2: start the binary again on the same sockets)\n"
               "  -v        print the version\n");
}

static int
signal_master(const gw_conf_t *conf, const char *what)
{
    int sig = strcmp(what, "reload") == 0    ? SIGHUP
              : strcmp(what, "stop") == 0    ? SIGTERM
              : strcmp(what, "reopen") == 0  ? SIGUSR1
              : strcmp(what, "upgrade") == 0 ? SIGUSR2
                                             : 0;
    if (sig == 0) {
        fprintf(stderr, "gateway: unknown signal \"%s\" (reload, stop, reopen or upgrade)\n", what);
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
    if (gw_master_check(conf, stderr) > 0) {
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

    return gw_master_run(conf, GW_VERSION_STR, argv);
}
