/*
 * systemd's service notification (the protocol of sd_notify(3)) without
 * libsystemd: one datagram of "KEY=VALUE" lines to the unix socket named
 * by $NOTIFY_SOCKET. The master tells systemd it is ready once the
 * listeners are open and the workers forked (Type=notify in
 * conf/gateway.service), and that it is stopping. Without $NOTIFY_SOCKET
 * (not started by systemd, or another service type) nothing is sent.
 */
#ifndef GW_SDNOTIFY_H
#define GW_SDNOTIFY_H

/**
 * Sends STATE (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 when sent, 0
 * when $NOTIFY_SOCKET is unset or empty, -1 when it is not a usable
 * address (neither a path nor '@' and an abstract name, or too long) or
 * the send failed (errno tells why). Never blocks: the socket is a
 * datagram socket opened and closed for the call, sent to with
 * MSG_DONTWAIT.
 */
int gw_sdnotify(const char *state);

#endif
