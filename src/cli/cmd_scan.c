/* doppel scan — video deepfake scanning (issue 6). Placeholder until src/video/ lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_scan(int argc, char **argv) {
    (void)argc;
    (void)argv;
#ifdef DP_HAVE_FFMPEG
    fprintf(stderr, "doppel scan: not implemented yet\n");
#else
    fprintf(stderr, "doppel scan: this doppel was built without FFmpeg (install libavformat-dev libavcodec-dev "
                    "libswscale-dev libavutil-dev and rebuild)\n");
#endif
    return 2;
}
