/* gw_sdnotify: the datagram systemd would receive, on a path and on an
 * abstract socket; no socket, bad addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gw_sdnotify.h"
#include "tap.h"

/* A datagram socket bound at NAME ('@' first: abstract). */
static int
listen_at(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        len++;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, (socklen_t)(sizeof(sa.sun_family) + len)) != 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void
expect(int fd, const char *want, const char *what)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    ok(n > 0 && strcmp(buf, want) == 0, "%s: received \"%s\"", what, buf);
}

int
main(void)
{
    char dir[] = "/tmp/gw-sdnotify-XXXXXX", path[128], abstract[64];

    unsetenv("NOTIFY_SOCKET");
    is_int(gw_sdnotify("READY=1"), 0, "no NOTIFY_SOCKET: nothing sent");
    setenv("NOTIFY_SOCKET", "", 1);
    is_int(gw_sdnotify("READY=1"), 0, "empty NOTIFY_SOCKET: nothing sent");

    ok(mkdtemp(dir) != NULL, "temporary directory");
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = listen_at(path);
    ok(fd >= 0, "listening on a path");
    setenv("NOTIFY_SOCKET", path, 1);
    is_int(gw_sdnotify("READY=1\nSTATUS=serving"), 1, "sent to a path");
    expect(fd, "READY=1\nSTATUS=serving", "path");
    close(fd);
    unlink(path);
    errno = 0;
    is_int(gw_sdnotify("STOPPING=1"), -1, "nobody listens any more: -1");
    ok(errno != 0, "errno says why");
    rmdir(dir);

    snprintf(abstract, sizeof(abstract), "@gw-sdnotify-%d", (int)getpid());
    fd = listen_at(abstract);
    ok(fd >= 0, "listening on an abstract socket");
    setenv("NOTIFY_SOCKET", abstract, 1);
    is_int(gw_sdnotify("STOPPING=1"), 1, "sent to an abstract socket");
    expect(fd, "STOPPING=1", "abstract");
    close(fd);

    setenv("NOTIFY_SOCKET", "relative/path", 1);
    is_int(gw_sdnotify("READY=1"), -1, "a relative path is refused");
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    is_int(gw_sdnotify("READY=1"), -1, "a path longer than sun_path is refused");
    setenv("NOTIFY_SOCKET", "@", 1);
    is_int(gw_sdnotify("READY=1"), -1, "an empty abstract name is refused");
    done_testing();
}
