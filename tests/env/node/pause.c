/* The pod sandbox's process (the "pause" container), built static so its image holds nothing
 * else: it sleeps until SIGTERM or SIGINT and reaps any child re-parented to it, as pid 1 of the
 * pod's namespaces must. `pause -v` prints its name and exits 0, which gives test images a
 * command for exec probes. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static int on(int sig, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(sig, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "-v") == 0) {
        puts("claimcheck-pause");
        return 0;
    }
    /* As pid 1 a signal without a handler is ignored: without these, TERM would not stop it. */
    if (on(SIGTERM, stop) || on(SIGINT, stop) || on(SIGCHLD, reap)) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
