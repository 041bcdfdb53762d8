/* A progress bar for long loops on stderr. On a terminal it redraws one line
 * (at most 10 times a second); otherwise (logs, CI) it prints a plain line at
 * each 10 % step (at most one per 5 s) and a final line, so logs stay short
 * and greppable. */
#ifndef DOPPEL_CLI_PROGRESS_H
#define DOPPEL_CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    char label[64];    /* "epoch 2/5" */
    const char *unit;  /* "img": rate shown as "1234 img/s" */
    int64_t total;     /* steps */
    double t0, last_draw;
    int last_decile;   /* plain mode: last 10 % printed */
    int tty, enabled;
} cli_progress;

double cli_now(void); /* monotonic seconds */
/* enabled 0: stays silent (e.g. --quiet or --json). */
void cli_progress_start(cli_progress *p, const char *label, int64_t total, const char *unit, int enabled);
/* step: steps done so far; items: items done so far (for the rate); extra:
 * printf-style metrics such as "loss 0.31  acc 88.2%" (may be NULL). */
void cli_progress_update(cli_progress *p, int64_t step, int64_t items, const char *extra, ...)
    __attribute__((format(printf, 4, 5)));
/* Final state (step = total) with the elapsed time instead of the ETA; ends the line. */
void cli_progress_finish(cli_progress *p, int64_t items, const char *extra, ...) __attribute__((format(printf, 3, 4)));
/* "1:02:03" or "2:03" into buf. */
const char *cli_fmt_duration(double s, char *buf, int n);

#endif
