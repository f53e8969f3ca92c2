/*
 * The master process: owns the listening sockets, forks the workers and
 * the discovery process, and waits for signals (reload, stop, reopen).
 */
#ifndef GW_MASTER_H
#define GW_MASTER_H

#include <stdio.h>

#include "gw_config.h"

/**
 * Runs the master for CONF (it takes ownership) until it stops; returns
 * the process exit code. VERSION goes into the start-up log line; ARGV
 * (the command line, kept) is what a binary upgrade runs again.
 */
int gw_master_run(gw_conf_t *conf, const char *version, char **argv);

/**
 * Checks the parts of a loaded config that go beyond its syntax (features
 * this build refuses, plugin configs against their schemas), printing one
 * line per problem to OUT. Returns the number of problems.
 */
int gw_master_check(gw_conf_t *conf, FILE *out);

/**
 * What a reload of FILE would refuse: NULL when FILE loads and passes
 * gw_master_check, else the problems as text, one per line (malloc'd,
 * the caller frees it). For POST /reload, before it signals the master.
 * Whether new listen addresses can be bound is known only at the reload.
 */
char *gw_master_check_file(const char *file);

#endif
