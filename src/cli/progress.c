/* Progress bar (see progress.h). */
#include "cli/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *cli_fmt_duration(double s, char *buf, int n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, (size_t)n, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

void cli_progress_start(cli_progress *p, const char *label, int64_t total, const char *unit, int enabled) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->unit = unit ? unit : "it";
    p->total = total > 0 ? total : 1;
    p->t0 = cli_now();
    p->last_draw = -1;
    p->last_decile = 0;
    p->tty = isatty(fileno(stderr));
    p->enabled = enabled;
}

static void draw(cli_progress *p, int64_t step, int64_t items, int final, const char *extra) {
    double el = cli_now() - p->t0;
    double rate = el > 0 ? (double)items / el : 0;
    char tbuf[32];
    if (final) cli_fmt_duration(el, tbuf, sizeof tbuf);
    else cli_fmt_duration(step > 0 ? el / (double)step * (double)(p->total - step) : 0, tbuf, sizeof tbuf);
    if (p->tty) {
        char bar[26];
        int w = 24, fill = (int)((double)w * (double)step / (double)p->total);
        if (fill > w) fill = w;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld  %.0f %s/s  %s  %s %s\033[K", p->label, bar, (long long)step,
                (long long)p->total, rate, p->unit, extra ? extra : "", final ? "took" : "ETA", tbuf);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s  step %lld/%lld (%d%%)  %.0f %s/s  %s  %s %s\n", p->label, (long long)step,
                (long long)p->total, (int)(100 * step / p->total), rate, p->unit, extra ? extra : "",
                final ? "took" : "ETA", tbuf);
    }
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, int64_t step, int64_t items, const char *extra, ...) {
    if (!p->enabled) return;
    double t = cli_now();
    if (p->tty) {
        if (p->last_draw >= 0 && t - p->last_draw < 0.1) return;
    } else {
        /* a line at each 10 %, but not more often than every 5 s, so short
         * phases print just their final line */
        int dec = (int)(10 * step / p->total);
        if (dec <= p->last_decile || step >= p->total) return; /* 100 % is printed by finish */
        if (t - (p->last_draw >= 0 ? p->last_draw : p->t0) < 5.0) return;
        p->last_decile = dec;
    }
    p->last_draw = t;
    char buf[256] = "";
    if (extra) {
        va_list ap;
        va_start(ap, extra);
        vsnprintf(buf, sizeof buf, extra, ap);
        va_end(ap);
    }
    draw(p, step, items, 0, buf);
}

void cli_progress_finish(cli_progress *p, int64_t items, const char *extra, ...) {
    if (!p->enabled) return;
    char buf[256] = "";
    if (extra) {
        va_list ap;
        va_start(ap, extra);
        vsnprintf(buf, sizeof buf, extra, ap);
        va_end(ap);
    }
    draw(p, p->total, items, 1, buf);
}
